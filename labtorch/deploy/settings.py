"""The deploy's settings: the ``torch_*`` keys of host data, checked before any host is touched.

Every key has a default, a type and a check; an unknown ``torch_*`` key or a bad value is a
:class:`SettingsError` that names where it was set (a group_data file or an inventory host) and the
key, so a typo fails the whole run at once instead of one host at a time.
"""

from __future__ import annotations

import ast
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from string import Formatter
from typing import Any

from labtorch.data.mirrors import load_catalog
from labtorch.rules.cache import NUMBER_SETTINGS as _CACHE_NUMBERS
from labtorch.rules.cache import SETTING_CHECKS as _CACHE_CHECKS
from labtorch.rules.model import AUTO, CONDA_CHANNELS, DRIVER_POLICIES, INSTALLERS

PREFIX = "torch_"
_VARIANT = re.compile(r"^(auto|cpu|cu\d{3})$")
_PYTHON = re.compile(r"^3\.\d+$")
_RELEASE = re.compile(r"^\d+\.\d+(\.\d+)?$")
# One path component that cannot climb out of the envs directory (conda) or the venv root
# (pip): no "/", not "." or "..", nor anything else that starts with a dot or a dash.
_ENV_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
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


def _seconds(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 86400:
        return None
    return "must be a whole number of seconds from 0 to 86400"


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be True or False"


def _history_size(value: Any) -> str | None:
    """How many of an env's past states are kept: a whole number, 0 keeps none."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
        return None
    return "must be a whole number from 0 (keep no history) to 100"


def _scope(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value in options or (isinstance(value, str) and value.startswith("/")):
            return None
        return f"must be one of {', '.join(options)} or an absolute path"

    return check


def _env_name(value: Any) -> str | None:
    """The env is ``<conda root>/envs/<name>`` (conda) or ``<torch_venv_root>/<name>`` (pip): the
    name must be one plain path component, so that it cannot climb out of that directory (``..`` is
    the conda root, the base env), be that directory itself (``.``) or a nested one."""
    if not isinstance(value, str):
        return 'must be a plain env name such as "torch"'
    if not value:
        return "must not be empty: it names the env in the conda root's envs/ or torch_venv_root"
    parts = value.split("/")
    if len(parts) > 1 or value in (".", ".."):
        resolved = posixpath.normpath(posixpath.join("envs", value))
        if resolved == "envs":
            where = "that directory itself"
        elif not resolved.startswith("envs/"):
            where = "outside that directory (.. of conda's envs/ is the conda root: the base env)"
        else:
            where = "a nested directory, which conda does not list as an env"
        return (
            "must be a plain env name, not a path: the env is the conda root's envs/<name> or "
            f"torch_venv_root/<name>, and this would be {where}"
        )
    if value[0] in ".-":
        return "must not start with . or - (letters, digits, _ . -)"
    if not _ENV_NAME.match(value):
        return 'must be a plain env name such as "torch" (letters, digits, _ . -)'
    return None


def _venv_root(value: Any) -> str | None:
    """An absolute directory, written plainly: each venv is ``<root>/<torch_env>``."""
    if (
        isinstance(value, str)
        and value.startswith("/")
        and value.strip("/")
        and not any(part in (".", "..") for part in value.split("/"))
        and not any(char.isspace() for char in value)
    ):
        return None
    return "must be an absolute directory such as /opt/labtorch/venvs, without . or .. or spaces"


def _wheel_template(value: Any) -> str | None:
    """A URL in which ``{variant}`` is the only placeholder: it is filled in with
    ``str.format(variant=...)`` on every host, so any other field would fail there."""
    if not isinstance(value, str):
        return "must be a URL containing {variant}"
    try:
        parsed = [field for field in Formatter().parse(value) if field[1] is not None]
    except ValueError as exc:
        return f"is not a valid URL template ({exc}; write a literal brace twice: {{{{ or }}}})"
    for _, name, spec, conversion in parsed:
        if name != "variant" or spec or conversion:
            field = "{" + name + (f"!{conversion}" if conversion else "")
            field += (f":{spec}" if spec else "") + "}"
            return f"may use only the placeholder {{variant}}, not {field}"
    if not parsed:
        return "must contain {variant}"
    return None


def _lock_dir(value: Any) -> str | None:
    """Where the locks are: a directory on the controller (relative to where pyinfra runs)."""
    if isinstance(value, str) and value.strip() and not any(c in value for c in "\n\0"):
        return None
    return 'must be a directory on the controller, such as "locks"'


def _all(*checks: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    def every(value: Any) -> str | None:
        return next((problem for check in checks if (problem := check(value))), None)

    return every


@dataclass(frozen=True)
class Settings:
    """What a lab admin sets in group_data (each field is the key without ``torch_``)."""

    release: str = "2.3.1"
    installer: str = "conda"
    variant: str = AUTO
    driver_policy: str = "auto"
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
    conda_bootstrap: bool = True
    env_history: int = 5
    run_lock_wait: int = 600
    lock: str = "auto"
    lock_dir: str = "locks"
    # The lab cache (labtorch.rules.cache): which host, where it listens, its disk.
    cache_host: str = "auto"
    cache_port: int = 3143
    cache_bind: str = "0.0.0.0"
    cache_url: str | None = None
    cache_max_size: str = "50g"
    cache_dir: str = "/var/cache/labtorch-cache"
    cache_index_ttl: str = "10m"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "release": _pattern(_RELEASE, "2.3.1 or 2.3"),
    "installer": _choice(INSTALLERS),
    "variant": _pattern(_VARIANT, "auto, cpu or cu121"),
    "driver_policy": _choice(DRIVER_POLICIES),
    "python": _optional(_pattern(_PYTHON, "3.11")),
    "env": _env_name,
    "conda_channel": _choice(CONDA_CHANNELS),
    "toolkit": _boolean,
    "mirror": _mirror_name,
    "mirror_url": _optional(_pattern(_URL, "https://mirrors.example.edu.cn")),
    "wheel_mirror": _wheel_mirror_name,
    "wheel_mirror_url": _optional(
        _all(_pattern(_URL, "https://mirror.example/whl/{variant}/"), _wheel_template)
    ),
    "fallback_mirrors": _fallback_mirrors,
    "condarc_scope": _scope(("auto", "system", "user")),
    "pip_scope": _scope(("env", "user", "global")),
    "venv_root": _venv_root,
    "probe": _choice(("on-change", "always")),
    "conda_bootstrap": _boolean,
    "env_history": _history_size,
    "run_lock_wait": _seconds,
    "lock": _choice(("auto", "frozen", "off")),
    "lock_dir": _lock_dir,
    **_CACHE_CHECKS,
}
KEYS = tuple(f"{PREFIX}{field.name}" for field in fields(Settings))
# Every key but these holds text. pyinfra's --data turns an unquoted number into an int or a
# float (pyinfra_cli.util.parse_cli_arg: int(), then json.loads()), as Python does in a
# group_data file: 3.10 becomes 3.1 and 2.10 becomes 2.1. A number cannot be read back as the
# version that was typed, so it is refused with the way to quote it, never guessed.
_NOT_TEXT = ("toolkit", "fallback_mirrors", "run_lock_wait", "conda_bootstrap", "env_history")
_NOT_TEXT = (*_NOT_TEXT, *_CACHE_NUMBERS)
_QUOTED_EXAMPLES = {"release": "2.3", "python": "3.10"}


def _number(key: str, value: int | float) -> str:
    example = _QUOTED_EXAMPLES.get(key[len(PREFIX) :], "...")
    return (
        f'is the number {value!r}, not text: quote it, as {key} = "{example}" in a file or '
        f"--data '{key}=\"{example}\"' on the command line (pyinfra's --data and Python read "
        "3.10 as the number 3.1 and 2.10 as 2.1, so labtorch does not guess)"
    )


def check_keys(data: Mapping[str, Any], where: str) -> None:
    """Check every ``torch_*`` key of one data source (a group_data file, a host's data)."""
    for key, value in data.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :]
        check = _CHECKS.get(name)
        if check is None:
            raise SettingsError(where, key, f"unknown setting; known: {', '.join(KEYS)}")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and name not in _NOT_TEXT:
            raise SettingsError(where, key, _number(key, value))
        problem = check(value)
        if problem:
            raise SettingsError(where, key, f"{problem}, not {value!r}")


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


class _ModuleBindings(ast.NodeVisitor):
    """The names a module binds at its top level (in any block, not inside a function, class,
    lambda or comprehension), and those that an import binds."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.imported: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self.bound.add(node.id)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.imported.add(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def _scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.bound.add(node.name)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope

    def _skip(self, node: ast.AST) -> None:
        pass

    visit_Lambda = visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _skip


def keys_set_by(path: Path) -> set[str]:
    """The data keys a group_data file sets, as pyinfra reads them (``pyinfra_cli.inventory``:
    the module's names but those bound by an import, or only those of ``__all__``), found by
    parsing the file, not by running it: a key that appears only in a comment, a string or a
    function is not set there."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = _ModuleBindings()
    names.visit(tree)
    exported = None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            try:
                exported = set(ast.literal_eval(node.value))
            except ValueError:
                exported = None
    if exported is None:
        keys = names.bound - names.imported
    else:
        keys = exported & (names.bound | names.imported)
    return {key for key in keys if not key.startswith("__")}
