"""Failing one host with its reason, without stopping the others."""

from __future__ import annotations

from pyinfra.api import QuoteString, StringCommand, operation


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
