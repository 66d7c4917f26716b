"""Finding, reading and merging condarc files as conda does (``conda/common/configuration.py``).

Only the keys the stand-in acts on are typed and merged; other keys are kept raw so that
``conda config --show-sources`` still reports them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labtorch_sim.conda.errors import ConfigurationLoadError, InvalidTypeError

# The kind of value of every key the stand-in honours; the kind decides how sources merge.
LIST_KEYS = frozenset({"channels", "default_channels", "envs_dirs", "pkgs_dirs"})
MAP_KEYS = frozenset({"custom_channels", "override_virtual_packages"})
STRING_KEYS = frozenset({"channel_alias", "solver", "channel_priority"})
BOOL_KEYS = frozenset({"add_pip_as_python_dependency", "offline"})
KNOWN_KEYS = LIST_KEYS | MAP_KEYS | STRING_KEYS | BOOL_KEYS

# conda's environment variable names for keys whose name differs from CONDA_<KEY>.
_ENV_ALIASES = {"envs_dirs": ("CONDA_ENVS_DIRS", "CONDA_ENVS_PATH")}
_FINAL = re.compile(r"^([A-Za-z_][\w-]*)\s*:.*#!final\s*$", re.MULTILINE)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Source:
    """One configuration source: a file, or ``envvars``; ``final`` holds its ``#!final`` keys."""

    name: str
    data: Mapping[str, Any]
    final: frozenset[str] = field(default_factory=frozenset)


# conda reads a file of the search path only under these names or extensions, and a directory's
# files only with these extensions (conda 26.7.1 ``common/configuration.py``,
# ``CONDARC_FILENAMES``, ``YAML_EXTENSIONS``, ``Configuration._expand_search_path``); any other
# file, ``$CONDARC`` included, is silently ignored.
CONDARC_FILENAMES = (".condarc", "condarc")
YAML_EXTENSIONS = (".yml", ".yaml")


def search_path(root_prefix: Path, environ: Mapping[str, str]) -> list[Path]:
    """conda's ``SEARCH_PATH`` (``base/constants.py``), expanded against ``environ``; entries
    may be files or ``condarc.d`` directories, and need not exist."""
    home = Path(environ.get("HOME") or Path.home())
    groups: list[Path] = [Path("/etc/conda"), Path("/var/lib/conda"), root_prefix]
    if environ.get("XDG_CONFIG_HOME"):
        groups.append(Path(environ["XDG_CONFIG_HOME"]) / "conda")
    groups += [home / ".config" / "conda", home / ".conda"]
    paths = [path for group in groups for path in _group(group)] + [home / ".condarc"]
    if environ.get("CONDA_PREFIX"):
        paths += _group(Path(environ["CONDA_PREFIX"]))
    if environ.get("CONDARC"):
        paths.append(Path(environ["CONDARC"]).expanduser())
    return paths


def _group(directory: Path) -> list[Path]:
    """``.condarc``, ``condarc`` and ``condarc.d`` of one directory."""
    return [directory / ".condarc", directory / "condarc", directory / "condarc.d"]


def condarc_files(root_prefix: Path, environ: Mapping[str, str]) -> list[Path]:
    """The files conda reads, in order: search-path files under a condarc name or with a YAML
    extension, and the YAML files of search-path directories (sorted by name)."""
    files: list[Path] = []
    for path in search_path(root_prefix, environ):
        if path.is_file():
            if path.name in CONDARC_FILENAMES or path.suffix in YAML_EXTENSIONS:
                files.append(path)
        elif path.is_dir():
            entries = sorted(path.iterdir(), key=lambda entry: entry.name)
            files += [e for e in entries if e.is_file() and e.suffix in YAML_EXTENSIONS]
    return files


def load_sources(root_prefix: Path, environ: Mapping[str, str]) -> list[Source]:
    """Every condarc conda reads, in search order, then the ``CONDA_*`` variables."""
    seen: set[Path] = set()
    sources = []
    for path in condarc_files(root_prefix, environ):
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        sources.append(read_condarc(path))
    envvars = _environment_source(environ)
    if envvars.data:
        sources.append(envvars)
    return sources


def read_condarc(path: Path) -> Source:
    """Parse one condarc file; an unreadable one is conda's ``ConfigurationLoadError``."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigurationLoadError(str(path), str(error)) from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationLoadError(str(path), f"expected a mapping, found {type(data).__name__}")
    for key, value in data.items():
        _check_type(key, value, str(path))
    return Source(str(path), data, frozenset(_FINAL.findall(text)) & set(data))


def _check_type(key: str, value: Any, source: str) -> None:
    if key in LIST_KEYS and not isinstance(value, list):
        raise InvalidTypeError(key, value, source, "sequence")
    if key in MAP_KEYS and not isinstance(value, dict):
        raise InvalidTypeError(key, value, source, "map")
    if key in STRING_KEYS and not isinstance(value, str):
        raise InvalidTypeError(key, value, source, "str")
    if key in BOOL_KEYS and not isinstance(value, bool):
        raise InvalidTypeError(key, value, source, "bool")


def _environment_source(environ: Mapping[str, str]) -> Source:
    """Settings from ``CONDA_<KEY>`` variables; lists are comma-separated, as in conda."""
    data: dict[str, Any] = {}
    for key in sorted(KNOWN_KEYS - MAP_KEYS):
        for variable in _ENV_ALIASES.get(key, (f"CONDA_{key.upper()}",)):
            if variable in environ:
                data[key] = _parse_env_value(key, environ[variable], variable)
                break
    return Source("envvars", data)


def _parse_env_value(key: str, raw: str, variable: str) -> Any:
    if key in LIST_KEYS:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if key in BOOL_KEYS:
        if raw.lower() not in _TRUE | _FALSE:
            raise InvalidTypeError(key, raw, variable, "bool")
        return raw.lower() in _TRUE
    return raw


def merge(sources: list[Source]) -> dict[str, Any]:
    """Merged settings: scalars last-wins, maps key-wise, lists later-first and de-duplicated.

    A key marked ``#!final`` in one source ignores that key in every later source.
    """
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(k for source in sources for k in source.data):
        merged[key] = _merge_values(list(_values_until_final(sources, key)))
    return merged


def _values_until_final(sources: list[Source], key: str) -> Iterator[Any]:
    for source in sources:
        if key in source.data:
            yield source.data[key]
            if key in source.final:
                return


def _merge_values(values: list[Any]) -> Any:
    if all(isinstance(v, list) for v in values):
        return list(dict.fromkeys(item for value in reversed(values) for item in value))
    if all(isinstance(v, dict) for v in values):
        merged: dict[Any, Any] = {}
        for value in values:
            merged.update(value)
        return merged
    return values[-1]


def expand_path(path: str, environ: Mapping[str, str]) -> Path:
    """A directory setting with ``~`` and ``$VARS`` expanded against ``environ``."""
    expanded = re.sub(
        r"\$\{?(\w+)\}?", lambda m: environ.get(m.group(1), m.group(0)), os.fspath(path)
    )
    if expanded.startswith("~"):
        expanded = str(Path(environ.get("HOME") or Path.home())) + expanded[1:]
    return Path(expanded)
