"""Environments: where ``-n``/``-p`` point, which environments exist, what they contain."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import rattler

from labtorch_sim.conda.context import Context
from labtorch_sim.conda.errors import EnvironmentLocationNotFound

ROOT_NAMES = ("base", "root")


def target_prefix(context: Context, name: str | None, prefix: str | None) -> Path:
    """The environment a command acts on; ``-n NAME`` may name one that does not exist yet."""
    if prefix:
        return Path(prefix).expanduser().absolute()
    if name in ROOT_NAMES:
        return context.root_prefix
    if name:
        for directory in context.envs_dirs:
            if is_environment(directory / name):
                return directory / name
        return context.envs_dirs[0] / name
    return Path(context.active_prefix or context.root_prefix)


def is_environment(prefix: Path) -> bool:
    return (prefix / "conda-meta").is_dir()


def require_environment(prefix: Path) -> None:
    if not is_environment(prefix):
        raise EnvironmentLocationNotFound(str(prefix))


def environment_name(context: Context, prefix: Path) -> str:
    """``base``, the directory name of an environment under an envs dir, or ``""``."""
    if prefix == context.root_prefix:
        return "base"
    return prefix.name if prefix.parent in context.envs_dirs else ""


def _registry(home: Path) -> Path:
    return home / ".conda" / "environments.txt"


def _registries(context: Context) -> list[Path]:
    """``environments.txt`` files conda reads: as root every passwd home's (not ``$HOME``'s)."""
    if os.geteuid() == 0:
        return list(dict.fromkeys(_registry(Path(entry.pw_dir)) for entry in pwd.getpwall()))
    return [_registry(context.home)]


def register(context: Context, prefix: Path) -> None:
    """Record a new environment in ``~/.conda/environments.txt``, as conda does."""
    registry = _registry(context.home)
    known = registry.read_text().splitlines() if registry.is_file() else []
    if str(prefix) not in known and prefix != context.root_prefix:
        registry.parent.mkdir(parents=True, exist_ok=True)
        registry.write_text("".join(f"{line}\n" for line in [*known, str(prefix)]))


def unregister(context: Context, prefix: Path) -> None:
    registry = _registry(context.home)
    if registry.is_file():
        kept = [line for line in registry.read_text().splitlines() if line != str(prefix)]
        registry.write_text("".join(f"{line}\n" for line in kept))


def environments(context: Context) -> list[Path]:
    """Known environments: base, every one under an envs dir, every registered one that exists."""
    found = [context.root_prefix]
    for directory in context.envs_dirs:
        if directory.is_dir():
            found += sorted(p for p in directory.iterdir() if is_environment(p))
    for registry in _registries(context):
        if registry.is_file():
            found += [Path(line) for line in registry.read_text().splitlines() if line.strip()]
    return [p for p in dict.fromkeys(found) if is_environment(p)]


def installed(prefix: Path) -> list[rattler.PrefixRecord]:
    """The packages of an environment, from ``conda-meta/*.json``, sorted by name."""
    records = [rattler.PrefixRecord.from_path(p) for p in (prefix / "conda-meta").glob("*.json")]
    return sorted(records, key=lambda record: record.name.normalized)
