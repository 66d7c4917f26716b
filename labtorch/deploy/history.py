"""The deploy's history step: an env's exact state, recorded before the deploy changes it, so
that ``labtorch rollback`` can put it back."""

from __future__ import annotations

import os
import socket
import time

from labtorch.deploy.settings import Settings
from labtorch.facts.host_state import HostState
from labtorch.operations import history
from labtorch.rules.envdiff import CREATE, OK, REPLACE, EnvDiff
from labtorch.rules.model import Plan

# This run, as the states it records name it: when, where from, which process.
RUN_ID = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{socket.gethostname()}-{os.getpid()}"


def kind_of(settings: Settings) -> str:
    return "conda" if settings.installer == "conda" else "pip"


def record_before_change(state: HostState, settings: Settings, diff: EnvDiff, plan: Plan) -> None:
    """Record the env's state when this run is about to change an env that exists: not on a
    no-op, not when the env is created (or a foreign directory moved aside for it), not with
    ``torch_env_history = 0``."""
    if settings.env_history <= 0 or diff.action in (OK, CREATE, REPLACE):
        return
    if state.env_prefix is None or state.env_is_foreign(settings.installer):
        return
    history.record(
        name="Record the env's state",
        prefix=state.env_path,
        kind=kind_of(settings),
        keep=settings.env_history,
        run=RUN_ID,
        reason=f"before the deploy of torch {plan.torch.version} ({plan.variant})",
        conda=state.conda_exe if settings.installer == "conda" else None,
    )
