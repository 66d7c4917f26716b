"""labtorch's pyinfra facts, all in one place: thin wrappers that send a pure script and hand its
output to a pure parser of :mod:`labtorch.facts`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.api.exceptions import FactProcessError
from typing_extensions import override

from labtorch.facts import probe_script
from labtorch.facts.cache_host import (
    CacheHostState,
    cache_host_script,
    parse_cache_host,
    parse_upstream_log,
    upstream_log_script,
)
from labtorch.facts.env_discovery import audit_command, parse_audit
from labtorch.facts.env_history import parse_rollback_state, rollback_state_script
from labtorch.facts.host_state import HostState, host_state_script, parse_host_state
from labtorch.facts.probe_output import PROBE_SOURCE, probe_result

_PROBE_END = "LABTORCH_PROBE_END"
T = TypeVar("T")


class LabHost(FactBase[HostState]):
    """
    Platform, GPUs (nvidia-smi and the loaded kernel module), conda, the condarc labtorch owns,
    the target env's packages and its pip config, in one command.

    + installer: ``conda`` or ``pip`` (where the env lives)
    + env: the env's name
    + condarc_scope: ``auto`` (``system`` as root, else ``user``), ``system`` (the conda root's
      .condarc), ``user`` (~/.condarc) or a path
    + venv_root: where pip-route envs live
    + pip_scope: ``env``, ``user``, ``global`` or a path to the pip.conf labtorch owns
    """

    @override
    @staticmethod
    def default() -> None:
        return None

    @override
    def command(
        self,
        installer: str = "conda",
        env: str = "torch",
        condarc_scope: str = "auto",
        venv_root: str = "/opt/labtorch/venvs",
        pip_scope: str = "env",
    ) -> str:
        return host_state_script(installer, env, condarc_scope, venv_root, pip_scope)

    @override
    def process(self, output: list[str]) -> HostState:
        return _parsed(parse_host_state, output)


class RollbackState(FactBase[tuple[HostState, list[dict]] | None]):
    """
    What the LabHost fact reads, and every state the env's history keeps (``labtorch rollback``),
    in one command. Same arguments as LabHost.
    """

    @override
    @staticmethod
    def default() -> None:
        return None

    @override
    def command(
        self,
        installer: str = "conda",
        env: str = "torch",
        condarc_scope: str = "auto",
        venv_root: str = "/opt/labtorch/venvs",
        pip_scope: str = "env",
    ) -> str:
        return rollback_state_script(installer, env, condarc_scope, venv_root, pip_scope)

    @override
    def process(self, output: list[str]) -> tuple[HostState, list[dict]]:
        return _parsed(parse_rollback_state, output)


class TorchProbe(FactBase[dict | None]):
    """
    What torch really does in an env: versions, CUDA, devices and a matmul on each, and where
    each torch-family package came from. None when the env has no python. The probe keeps its
    result in the env, with the loaded driver it was given, for a rerun that finds the env and
    the driver unchanged.

    + python: the env's python
    + kernel_driver: the loaded NVIDIA kernel module's version, as the LabHost fact read it
    """

    @override
    @staticmethod
    def default() -> None:
        return None

    @override
    def command(self, python: str, kernel_driver: str | None = None) -> StringCommand:
        # The probe's source goes in a quoted here-document, so nothing in it is expanded.
        return StringCommand(
            "if [ -x", QuoteString(python), "]; then", QuoteString(python),
            "-", probe_script.KEEP, QuoteString(kernel_driver or ""),
            f"<<'{_PROBE_END}'\n{PROBE_SOURCE}\n{_PROBE_END}\nfi",
        )  # fmt: skip

    @override
    def process(self, output: list[str]) -> dict | None:
        return _parsed(probe_result, output)


class TorchEnvs(FactBase[dict | None]):
    """
    Every conda env (each conda's root, its envs and ~/.conda/environments.txt) and every venv
    (a pyvenv.cfg under /opt, /srv, /root or /home/*) that holds torch, each probed with its own
    python; with the host's platform, driver and GPUs, in one command. A plain JSON value:
    ``{"platform", "driver", "gpus", "envs": [{"prefix", "kind", "probe", "error"}]}`` with
    ``driver`` and ``gpus`` as :meth:`HostState.hardware` gives them, ``kind`` ``conda`` or
    ``venv``, ``probe`` what probe_script printed (None, and ``error`` the last line printed,
    when it printed none).
    """

    @override
    @staticmethod
    def default() -> None:
        return None

    @override
    def command(self) -> str:
        return audit_command()

    @override
    def process(self, output: list[str]) -> dict:
        return _parsed(parse_audit, output)


class CacheHost(FactBase[CacheHostState]):
    """
    The lab cache's host: nginx, apt and systemctl, labtorch's nginx configuration and unit
    (their sha256), the cache's directories, the service's state and the upstream log's size,
    in one command.

    + directories: the directories whose owner and mode to read
    """

    @override
    @staticmethod
    def default() -> None:
        return None

    @override
    def command(self, directories: list[str]) -> str:
        return cache_host_script(directories)

    @override
    def process(self, output: list[str]) -> CacheHostState:
        return _parsed(parse_cache_host, output)


class CacheUpstreamLog(FactBase[list]):
    """
    What the lab cache sent upstream since byte ``offset`` of its upstream log.

    + offset: the log's size before the run
    """

    @override
    @staticmethod
    def default() -> list:
        return []

    @override
    def command(self, offset: int) -> str:
        return upstream_log_script(offset)

    @override
    def process(self, output: list[str]) -> list:
        return parse_upstream_log(output)


def _parsed(parse: Callable[[list[str]], T], output: list[str]) -> T:
    """A pure parser's answer; its ValueError becomes pyinfra's FactProcessError, which fails
    the host, not the run."""
    try:
        return parse(output)
    except ValueError as exc:
        raise FactProcessError(str(exc)) from exc
