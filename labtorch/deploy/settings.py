"""The deploy's settings: the ``torch_*`` keys of host data, checked before any host is touched.

Every key has a default, a type and a check; an unknown ``torch_*`` key or a bad value is a
:class:`SettingsError` that names where it was set (a group_data file or an inventory host) and the
key, so a typo fails the whole run at once instead of one host at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from labtorch.data.mirrors import load_catalog
from labtorch.rules.model import AUTO, CONDA_CHANNELS, DRIVER_POLICIES, INSTALLERS

PREFIX = "torch_"
_VARIANT = re.compile(r"^(auto|cpu|cu\d{3})$")
_PYTHON = re.compile(r"^3\.\d+$")
_RELEASE = re.compile(r"^\d+\.\d+(\.\d+)?$")
_ENV_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_URL = re.compile(r"^https?://[^\s]+$")


class SettingsError(ValueError):
    """A ``torch_*`` setting is unknown or malformed; the message names where and what to do."""

    def __init__(self, where: str, key: str, problem: str) -> None:
        self.where = where
        self.key = key
        super().__init__(f"{where}: {key}: {problem}")


def _choice(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}"

    return check


def _pattern(pattern: re.Pattern[str], example: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and pattern.match(value):
            return None
        return f"must look like {example}"

    return check


def _optional(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def optional_check(value: Any) -> str | None:
        return None if value is None else check(value)

    return optional_check


def _mirror_name(value: Any) -> str | None:
    known = load_catalog().mirrors
    if isinstance(value, str) and value in known:
        return None
    return f"must be a mirror of labtorch/data/mirrors.yaml ({', '.join(known)})"


def _wheel_mirror_name(value: Any) -> str | None:
    wheels = load_catalog().wheel_mirrors()
    if isinstance(value, str) and value in wheels:
        return None
    return f"must be a mirror of the PyTorch wheel indexes ({', '.join(wheels)})"


def _fallback_mirrors(value: Any) -> str | None:
    if not isinstance(value, list | tuple):
        return 'must be a list such as ["bfsu"]'
    for entry in value:
        if not (isinstance(entry, str) and _URL.match(entry)) and _mirror_name(entry):
            known = ", ".join(load_catalog().mirrors)
            return f"must list mirror names ({known}) or TUNA-layout base URLs, not {entry!r}"
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be True or False"


def _scope(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value in options or (isinstance(value, str) and value.startswith("/")):
            return None
        return f"must be one of {', '.join(options)} or an absolute path"

    return check


@dataclass(frozen=True)
class Settings:
    """What a lab admin sets in group_data (each field is the key without ``torch_``)."""

    release: str = "2.3.1"
    installer: str = "conda"
    variant: str = AUTO
    driver_policy: str = "strict"
    python: str | None = None
    env: str = "torch"
    conda_channel: str = AUTO
    toolkit: bool = False
    mirror: str = "tuna"
    mirror_url: str | None = None
    wheel_mirror: str = "aliyun"
    wheel_mirror_url: str | None = None
    fallback_mirrors: tuple[str, ...] = ()
    condarc_scope: str = "auto"
    pip_scope: str = "env"
    venv_root: str = "/opt/labtorch/venvs"
    probe: str = "on-change"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "release": _pattern(_RELEASE, "2.3.1 or 2.3"),
    "installer": _choice(INSTALLERS),
    "variant": _pattern(_VARIANT, "auto, cpu or cu121"),
    "driver_policy": _choice(DRIVER_POLICIES),
    "python": _optional(_pattern(_PYTHON, "3.11")),
    "env": _pattern(_ENV_NAME, "torch (letters, digits, _ . -)"),
    "conda_channel": _choice(CONDA_CHANNELS),
    "toolkit": _boolean,
    "mirror": _mirror_name,
    "mirror_url": _optional(_pattern(_URL, "https://mirrors.example.edu.cn")),
    "wheel_mirror": _wheel_mirror_name,
    "wheel_mirror_url": _optional(_pattern(_URL, "https://mirror.example/whl/{variant}/")),
    "fallback_mirrors": _fallback_mirrors,
    "condarc_scope": _scope(("auto", "system", "user")),
    "pip_scope": _scope(("env", "user", "global")),
    "venv_root": _pattern(re.compile(r"^/[^\s]*$"), "/opt/labtorch/venvs"),
    "probe": _choice(("on-change", "always")),
}
KEYS = tuple(f"{PREFIX}{field.name}" for field in fields(Settings))


def check_keys(data: Mapping[str, Any], where: str) -> None:
    """Check every ``torch_*`` key of one data source (a group_data file, a host's data)."""
    for key, value in data.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        check = _CHECKS.get(name)
        if check is None:
            raise SettingsError(where, key, f"unknown setting; known: {', '.join(KEYS)}")
        problem = check(value)
        if problem:
            raise SettingsError(where, key, f"{problem}, not {value!r}")
    wheel_url = data.get(f"{PREFIX}wheel_mirror_url")
    if wheel_url and "{variant}" not in wheel_url:
        raise SettingsError(where, f"{PREFIX}wheel_mirror_url", "must contain {variant}")


def settings_from(data: Mapping[str, Any]) -> Settings:
    """The settings of one host from its merged data (already checked by ``check_keys``)."""
    values = {
        field.name: data[f"{PREFIX}{field.name}"]
        for field in fields(Settings)
        if data.get(f"{PREFIX}{field.name}") is not None
    }
    if "fallback_mirrors" in values:
        values["fallback_mirrors"] = tuple(values["fallback_mirrors"])
    return Settings(**values)
