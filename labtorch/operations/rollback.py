"""rollback: an env put back to a state its history recorded, and the probe of the result."""

from __future__ import annotations

from collections.abc import Callable

from pyinfra import host, state
from pyinfra.api import StringCommand, operation

from labtorch.facts.env_history import restore_command
from labtorch.facts.pyinfra_facts import TorchProbe
from labtorch.operations.checks import failing_command
from labtorch.rules.history import describe, rollback_verdict
from labtorch.rules.verdict import ProbeVerdict


@operation()
def restore(
    prefix: str,
    kind: str,
    keep: int,
    run: str,
    target: dict,
    already: bool,
    conda: str | None = None,
):
    """
    Put the env back to the recorded state ``target``: first record the state it is in (so the
    rollback can be rolled back), then ``conda install --revision`` to the state's revision, or
    the state's explicit list when that does not give exactly its packages; a venv by its
    recorded hash-checked requirements. Fails the host, with the reason, when the env is not
    exactly the state afterwards.

    + prefix: the env
    + kind: ``conda`` or ``pip``
    + keep: how many states the history keeps
    + run: this labtorch run
    + target: the state to put back, as the history recorded it
    + already: the env already is that state (from the host state's listing): nothing to do
    + conda: the conda executable (conda envs)
    """
    if already:
        host.noop(f"{prefix} already is {describe(target)}")
        return
    yield StringCommand(restore_command(prefix, kind, keep, run, target["id"], conda))


@operation()
def verify(
    python: str,
    torch: str | None,
    gpus: int,
    kernel_driver: str | None = None,
    on_result: Callable[[dict | None, ProbeVerdict], None] | None = None,
):
    """
    Probe the env after a rollback: torch is the recorded version, sees every GPU its build
    supports, and a matmul runs on each. Fails the host with the reasons when not.

    + python: the env's python
    + torch: torch's version in the recorded state
    + gpus: how many working GPUs nvidia-smi lists
    + kernel_driver: the loaded NVIDIA kernel module, kept with the probe's result
    + on_result: called with the probe's result and the verdict
    """
    if not state.is_executing:
        host.noop("the probe runs when executing")
        return
    probe = host.get_fact(TorchProbe, python=python, kernel_driver=kernel_driver)
    verdict = rollback_verdict(probe, torch, gpus)
    if on_result is not None:
        on_result(probe, verdict)
    if verdict.passed:
        host.noop(f"torch {torch} works")
        return
    yield failing_command("probe failed: " + "; ".join(verdict.failures))
