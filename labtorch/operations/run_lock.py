"""The lock a deploy holds on a host's env while it changes it (see labtorch.rules.run_lock)."""

from __future__ import annotations

import posixpath

from pyinfra.api import QuoteString, StringCommand, operation

from labtorch.rules.run_lock import LockOwner


@operation(is_idempotent=False)
def acquire(path: str, owner: LockOwner, wait_s: int, what: str, stale: str | None = None):
    """
    Take the lock at ``path`` (a directory), waiting up to ``wait_s`` seconds for another run
    to let it go; then fail this host, naming the holder and since when.

    + path: the lock directory beside the env
    + owner: this run
    + wait_s: how long to wait for another run
    + what: what the lock guards, as the failure names it (the host)
    + stale: the owner line of a lock found held by a run that is gone: it is taken over, if
      it still names that run
    """
    lock = QuoteString(path)
    owner_file = QuoteString(f"{path}/owner")
    if stale is not None:
        yield StringCommand(
            "[", "\"$(cat", owner_file, '2>/dev/null)"', "=", QuoteString(stale), "]",
            "&&", "rm", "-rf", lock, "||", "true",
        )  # fmt: skip
    # The holder's line is "controller pid since": said back with the time in UTC.
    # A mkdir that fails for another reason than a held lock (no such parent: a venv root not
    # made yet; a full disk) says why at once instead of waiting.
    yield StringCommand(
        "mkdir", "-p", QuoteString(posixpath.dirname(path)), "&&",
        "i=0; until mkdir", lock, "2>/dev/null; do",
        "[ -d", lock, "] || { mkdir", lock, "; exit 1; }; i=$((i+1));",
        f"if [ $i -gt {int(wait_s)} ]; then set -- $(cat", owner_file, "2>/dev/null);",
        "printf 'labtorch: another labtorch run holds %s since %s (run %s on %s)\\n'",
        QuoteString(what), '"$(date -u -d @${3:-0} +%Y-%m-%dT%H:%M:%SZ)"',
        '"${2:-?}" "${1:-?}" >&2; exit 1; fi; sleep 1; done;',
        "echo", QuoteString(owner.line()), ">", owner_file,
    )  # fmt: skip


@operation(is_idempotent=False)
def release(path: str, owner: LockOwner):
    """
    Let the lock at ``path`` go, if this run still holds it.

    + path: the lock directory beside the env
    + owner: this run
    """
    yield StringCommand(
        "[", "\"$(cat", QuoteString(f"{path}/owner"), '2>/dev/null)"', "=",
        QuoteString(owner.line()), "]", "&&", "rm", "-rf", QuoteString(path), "||", "true",
    )  # fmt: skip
