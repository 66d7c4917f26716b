"""The merged configuration one command runs with: conda root, condarc settings, environment."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from labtorch_sim.conda import condarc
from labtorch_sim.conda.channels import ChannelConfig

# Set by the ``bin/conda`` wrapper, which knows where the installation lives.
ROOT_VARIABLE = "LABTORCH_SIM_CONDA_ROOT"
DEFAULT_ROOT = "/opt/conda"
# Miniconda ships conda-libmamba-solver, so that is conda 26's default; rattler solves either way.
DEFAULT_SOLVER = "libmamba"


@dataclass(frozen=True)
class Context:
    """Everything a command needs to know besides its own arguments."""

    root_prefix: Path
    environ: Mapping[str, str]
    sources: tuple[condarc.Source, ...]

    @classmethod
    def load(cls, environ: Mapping[str, str]) -> Context:
        """Read the condarc files of the installation that ``environ`` points at."""
        root = Path(environ.get(ROOT_VARIABLE) or DEFAULT_ROOT)
        return cls(root, environ, tuple(condarc.load_sources(root, environ)))

    @cached_property
    def settings(self) -> dict[str, Any]:
        return condarc.merge(list(self.sources))

    @cached_property
    def channel_config(self) -> ChannelConfig:
        return ChannelConfig.from_settings(self.settings)

    @property
    def home(self) -> Path:
        return Path(self.environ.get("HOME") or Path.home())

    @property
    def channels(self) -> list[str]:
        return list(self.settings.get("channels", []))

    @property
    def solver(self) -> str:
        return str(self.settings.get("solver", DEFAULT_SOLVER))

    @property
    def add_pip_as_python_dependency(self) -> bool:
        return bool(self.settings.get("add_pip_as_python_dependency", True))

    @property
    def offline(self) -> bool:
        """conda's ``offline`` setting (condarc, ``CONDA_OFFLINE``; ``--offline`` adds to it)."""
        return bool(self.settings.get("offline", False))

    @property
    def override_virtual_packages(self) -> dict[str, str]:
        overrides = self.settings.get("override_virtual_packages", {})
        return {str(k): "" if v is None else str(v) for k, v in overrides.items()}

    @property
    def root_writable(self) -> bool:
        return os.access(self.root_prefix, os.W_OK)

    @property
    def envs_dirs(self) -> list[Path]:
        """Configured directories first, then conda's fixed ones (the writable one first)."""
        fixed = [self.root_prefix / "envs", self.home / ".conda" / "envs"]
        if not self.root_writable:
            fixed.reverse()
        configured = [
            condarc.expand_path(p, self.environ) for p in self.settings.get("envs_dirs", [])
        ]
        return list(dict.fromkeys([*configured, *fixed]))

    @property
    def pkgs_dirs(self) -> list[Path]:
        """Configured package caches, or conda's defaults when none is."""
        configured = self.settings.get("pkgs_dirs") or []
        if configured:
            return list(dict.fromkeys(condarc.expand_path(p, self.environ) for p in configured))
        return [self.root_prefix / "pkgs", self.home / ".conda" / "pkgs"]

    @property
    def package_cache(self) -> Path:
        """The first package cache conda can write to, where downloads go."""
        for directory in self.pkgs_dirs:
            writable = directory if directory.exists() else directory.parent
            if os.access(writable, os.W_OK):
                return directory
        return self.pkgs_dirs[0]

    @property
    def config_files(self) -> list[str]:
        return [s.name for s in self.sources if s.name != "envvars"]

    @property
    def user_rc_path(self) -> Path:
        return self.home / ".condarc"

    @property
    def sys_rc_path(self) -> Path:
        return self.root_prefix / ".condarc"

    def command_line(self, argv: Sequence[str]) -> str:
        """A command as conda records it in history: the ``conda`` path, then the arguments."""
        return " ".join([str(self.root_prefix / "bin" / "conda"), *argv])

    @property
    def active_prefix(self) -> str | None:
        return self.environ.get("CONDA_PREFIX") or None
