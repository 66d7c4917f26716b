"""Who holds a host's env, and when a holder is gone (pure).

Two deploys at once on one env corrupt it (a solver panic on one host, a half-imported torch on
another), so a deploy that will change an env first takes a lock beside it: a directory
``<env>.labtorch-lock`` (``mkdir`` is atomic) holding one line, the owner. A lock is taken over
when its owner is a run of this controller whose process is gone, or when it is older than
:data:`STALE_AFTER_S` (a run elsewhere that died).
"""

from __future__ import annotations

from dataclasses import dataclass

from labtorch.facts.host_state import LOCK_SUFFIX

__all__ = ["LOCK_SUFFIX", "STALE_AFTER_S", "LockOwner", "is_stale"]

STALE_AFTER_S = 6 * 3600


@dataclass(frozen=True)
class LockOwner:
    """A run that holds the lock: its controller machine, its process and since when."""

    controller: str
    pid: int
    since: int

    def line(self) -> str:
        return f"{self.controller} {self.pid} {self.since}"

    @classmethod
    def parse(cls, line: str | None) -> LockOwner | None:
        """The owner a lock file names; None for an empty or unreadable one."""
        words = (line or "").split()
        if len(words) != 3 or not (words[1].isdigit() and words[2].isdigit()):
            return None
        return cls(words[0], int(words[1]), int(words[2]))


def is_stale(owner: LockOwner, now: int, controller: str, alive: bool) -> bool:
    """Whether a lock may be taken over: a dead run of this controller (``alive``: whether that
    process exists here), or older than :data:`STALE_AFTER_S`. (A lock whose owner cannot be
    read is being taken this instant, or was left by a run that died in that instant: it is
    waited for, never taken.)"""
    if owner.controller == controller and not alive:
        return True
    return now - owner.since > STALE_AFTER_S
