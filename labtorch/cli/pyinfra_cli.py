"""Running the pyinfra CLI from a labtorch command (``report``, ``lock``, ``rollback``), and what
it said when it stopped. By subprocess: the commands must not pay for importing pyinfra, and
pyinfra's CLI does the inventory, connection and parallelism as a deploy gets them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence


def run_pyinfra(
    arguments: Sequence[str], timeout_s: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pyinfra -y ARGUMENTS`` with this interpreter's pyinfra, its output captured.

    + env: the environment it runs with (default: this process's)

    Raises :class:`subprocess.TimeoutExpired` after ``timeout_s``.
    """
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", *arguments],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        timeout=timeout_s,
        check=False,
    )


def why_it_stopped(done: subprocess.CompletedProcess[str]) -> str:
    """The last line pyinfra wrote on stderr (where it says why it stopped), else its exit
    status."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"
