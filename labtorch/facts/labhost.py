"""The one fact the deploy reads: everything a host's plan and its operations decide from."""

from __future__ import annotations

from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError
from typing_extensions import override

from labtorch.snapshot import HostSnapshot, parse_snapshot, snapshot_command


class LabHost(FactBase[HostSnapshot]):
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
        return snapshot_command(installer, env, condarc_scope, venv_root, pip_scope)

    @override
    def process(self, output: list[str]) -> HostSnapshot:
        try:
            return parse_snapshot(output)
        except ValueError as exc:
            raise FactProcessError(str(exc)) from exc
