"""Checks that fail one host with its reason, without stopping the others."""

from __future__ import annotations

from collections.abc import Callable

from pyinfra import host, state
from pyinfra.api import QuoteString, StringCommand, operation

from labtorch.facts.pyinfra_facts import TorchProbe
from labtorch.rules.verdict import Expectation, ProbeVerdict, judge


def failing_command(reason: str) -> StringCommand:
    """A command that prints ``labtorch: reason`` and fails the host it runs on.

    Raising inside an operation would abort the run on every host, so a host-specific problem
    is reported by a failing command instead.
    """
    return StringCommand("echo", QuoteString(f"labtorch: {reason}"), ">&2;", "exit", "1")


@operation(is_idempotent=False)
def refuse(reason: str):
    """
    Fail this host with ``reason`` in pyinfra's output; the other hosts go on.

    + reason: what is wrong and what to do, in plain English
    """
    yield failing_command(reason)


@operation()
def verify(
    python: str,
    expected: Expectation,
    reused: dict | None = None,
    kernel_driver: str | None = None,
    on_result: Callable[[dict | None, ProbeVerdict], None] | None = None,
):
    """
    Prove that torch really works in the env: the planned build, a matmul on every GPU, and
    every torch-family package from the mirror. Fails the host, with the reasons, when not.

    The verify runs at execute time; ``on_result`` hands the probe and its verdict to whoever
    reports the run.

    + python: the env's python
    + expected: what the plan promises (version, variant, CUDA, GPU count, mirror URLs)
    + reused: the env's last probe, to judge instead of probing again, when the caller found
      that neither the env's packages nor the loaded driver changed since it ran
    + kernel_driver: the loaded NVIDIA kernel module's version, kept with the probe's result
    + on_result: called with the probe's result and the verdict
    """
    if reused is None and not state.is_executing:
        # The probe writes its result into the env and runs a matmul on each GPU: not while
        # pyinfra only looks for changes (--dry, or the check before asking to go on).
        host.noop(f"the probe of torch {expected.torch} ({expected.variant}) runs when executing")
        return
    probe = (
        reused
        if reused is not None
        else host.get_fact(TorchProbe, python=python, kernel_driver=kernel_driver)
    )
    verdict = judge(probe, expected)
    if on_result is not None:
        on_result(probe, verdict)
    if verdict.passed:
        again = " (last probe; the env and the driver are unchanged)" if reused else ""
        host.noop(f"torch {expected.torch} works ({expected.variant}){again}")
        return
    yield failing_command("probe failed: " + "; ".join(verdict.failures))
