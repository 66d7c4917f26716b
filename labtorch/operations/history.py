"""history: an env's exact state, recorded in the env before labtorch changes it."""

from __future__ import annotations

from pyinfra.api import StringCommand, operation

from labtorch.facts.env_history import record_command


@operation(is_idempotent=False)
def record(
    prefix: str,
    kind: str,
    keep: int,
    run: str,
    reason: str,
    conda: str | None = None,
):
    """
    Record the env's exact state as the next entry of ``<prefix>/.labtorch-history``: conda's
    explicit list with md5s and its revision number, or every distribution of a venv with the
    URL and sha256 of the file it came from; with the time, the run and the reason. The newest
    ``keep`` entries are kept. The caller calls it only right before a change of the env.

    + prefix: the env
    + kind: ``conda`` or ``pip``
    + keep: how many states to keep
    + run: the labtorch run that records it
    + reason: why (what the run is about to do)
    + conda: the conda executable (conda envs)
    """
    yield StringCommand(record_command(prefix, kind, keep, run, reason, conda))
