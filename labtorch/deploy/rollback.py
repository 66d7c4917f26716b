"""The rollback deploy (``labtorch rollback``): each targeted host's env put back to a state its
history recorded, then probed; one result per host, written when pyinfra disconnects.

Which state comes from ``$LABTORCH_ROLLBACK_TO`` (``previous``, the newest state kept, or a
state's number); the results go to ``$LABTORCH_ROLLBACK_RESULT`` (JSON). The env is the one the
deploy manages on that host (the same ``torch_*`` settings). A host without history, without
the env, or without that state fails alone with the reason; the others go on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra import host
from pyinfra.api import State, deploy
from pyinfra.api.host import Host
from pyinfra.api.state import BaseStateCallback

from labtorch.deploy.history import RUN_ID, kind_of
from labtorch.deploy.pytorch import check_inventory_settings, read_where_set
from labtorch.deploy.run_state import failed_step
from labtorch.deploy.settings import settings_from
from labtorch.facts.env_history import rollback_result
from labtorch.facts.host_state import HostState
from labtorch.facts.nvidia_smi import SmiReport
from labtorch.facts.pyinfra_facts import RollbackState
from labtorch.operations import checks, rollback
from labtorch.report.model import UNREACHABLE
from labtorch.rules.history import PREVIOUS, RESULT_ENV, TO_ENV, choose, holds, parse_target
from labtorch.rules.verdict import ProbeVerdict

RESTORE = "Put the env back"


@dataclass
class HostRollback:
    """One host's part of the rollback."""

    prefix: str | None = None
    kind: str | None = None
    kept: list[int] = field(default_factory=list)
    current: str | None = None
    target: dict | None = None
    already: bool = False
    step: str | None = None
    refusal: str | None = None
    probe: dict | None = None
    verdict: ProbeVerdict | None = None


def _summary(state: dict | None) -> dict | None:
    if state is None:
        return None
    keys = ("id", "time", "run", "reason", "torch", "conda_revision")
    return {key: state.get(key) for key in keys}


def _restore_meta(state: State, target: Host):
    """The restore operation's result on ``target`` (None when it did not run)."""
    for op_hash in state.get_op_order():
        data = state.ops[target].get(op_hash)
        names = state.op_meta[op_hash].names
        if data and any(name.endswith(RESTORE) for name in names):
            return data.operation_meta
    return None


def _output(meta) -> list[str]:
    try:
        return meta.stdout_lines if meta and meta.is_complete() else []
    except AssertionError:
        return []


def host_result(name: str, run: HostRollback | None, state: State | None, target: Host) -> dict:
    """One host's line of the rollback's results."""
    if run is None:
        return {"name": name, "status": "failed", "reason": UNREACHABLE, "step": "Connect"}
    result = {
        "name": name,
        "env": run.prefix,
        "kind": run.kind,
        "kept": run.kept,
        "state": _summary(run.target),
        "step": run.step,
        "reason": run.refusal,
        "from": run.current,
        "to": (run.target or {}).get("torch"),
        "how": None,
        "recorded": None,
        "probe": None,
    }
    if run.refusal is not None:
        return {**result, "status": "failed"}
    executing = state is not None and state.is_executing
    if not executing:
        return {**result, "status": "unchanged" if run.already else "would restore"}
    failed = failed_step(state, target) if state is not None else None
    done = rollback_result(_output(_restore_meta(state, target))) if state else None
    if done:
        result.update({key: done.get(key) for key in ("from", "how", "recorded")})
        result["from"] = result["from"] or run.current
    if run.verdict is not None:
        result["probe"] = {
            "passed": run.verdict.passed,
            "failures": run.verdict.failures,
            "notes": run.verdict.notes,
        }
    if failed:
        return {**result, "status": "failed", "step": failed[0], "reason": failed[1]}
    restored = done is not None and done.get("how")
    return {**result, "status": "restored" if restored else "unchanged"}


@dataclass
class RollbackRun:
    """Every host's :class:`HostRollback` of this pyinfra run, written at its end."""

    hosts: dict[str, HostRollback] = field(default_factory=dict)
    state: State | None = None
    written: bool = False

    def host(self, target: Host) -> HostRollback:
        if self.state is None:
            self.state = target.state
            target.state.add_callback_handler(_WriteAtEnd(self))
        return self.hosts.setdefault(target.name, HostRollback())

    def results(self) -> list[dict]:
        limit = self.state.limit_hosts if self.state else None
        limited = {target.name for target in limit} if isinstance(limit, list) and limit else None
        # In the inventory's order, whatever the order of --limit.
        targets = [t for t in self.state.inventory if limited is None or t.name in limited]
        return [
            host_result(target.name, self.hosts.get(target.name), self.state, target)
            for target in targets
        ]

    def write(self) -> None:
        path = os.environ.get(RESULT_ENV)
        if self.written or not path:
            return
        self.written = True
        Path(path).write_text(json.dumps({"hosts": self.results()}, indent=2) + "\n")


class _WriteAtEnd(BaseStateCallback):
    def __init__(self, run: RollbackRun) -> None:
        self.run = run

    def host_disconnect(self, state: State, host: Host) -> None:
        self.run.write()


ROLLBACK = RollbackRun()


def _refuse(run: HostRollback, step: str, reason: str) -> None:
    run.step, run.refusal = step, reason
    checks.refuse(name=step, reason=reason)


def _gpus(state: HostState) -> int:
    smi = state.nvidia_smi
    return len(smi.gpus) if isinstance(smi, SmiReport) else 0


def _keep(run: HostRollback):
    def keep(probe: dict | None, verdict: ProbeVerdict) -> None:
        run.probe, run.verdict = probe, verdict

    return keep


@deploy("labtorch: rollback")
def roll_back() -> None:
    """Put this host's env back to a recorded state, and prove torch works in it."""
    check_inventory_settings(host.inventory)
    run = ROLLBACK.host(host)
    settings = settings_from(host.data.dict())
    target = parse_target(os.environ.get(TO_ENV) or PREVIOUS)
    found = read_where_set(RollbackState, settings)
    if found is None:
        _refuse(run, "Read the env's history", "the host's facts could not be read")
        return
    state, states = found
    run.prefix, run.kind, run.kept = state.env_path, kind_of(settings), [s["id"] for s in states]
    torch = (state.env_packages or {}).get("pytorch" if run.kind == "conda" else "torch")
    run.current = torch.version if torch else None
    if state.env_prefix is None or state.env_is_foreign(settings.installer):
        _refuse(run, "Find the env", f"no {run.kind} env at {state.env_path}")
        return
    if run.kind == "conda" and state.conda_exe is None:
        _refuse(run, "Find conda", "no conda found to put the env back with")
        return
    chosen = choose(states, target, state.env_path)
    if isinstance(chosen, str):
        _refuse(run, "Choose the state", chosen)
        return
    run.target, run.already = chosen, holds(chosen, state.env_listing)
    rollback.restore(
        name=RESTORE,
        prefix=state.env_path,
        kind=run.kind,
        keep=max(settings.env_history, 1),
        run=RUN_ID,
        target=chosen,
        already=run.already,
        conda=state.conda_exe if run.kind == "conda" else None,
    )
    rollback.verify(
        name="Prove torch works",
        python=f"{state.env_path}/bin/python",
        torch=chosen.get("torch"),
        gpus=_gpus(state),
        kernel_driver=state.kernel_driver,
        on_result=_keep(run),
    )
