"""The env lock's owner line and when a lock may be taken over."""

from __future__ import annotations

import pytest

from labtorch.rules.run_lock import STALE_AFTER_S, LockOwner, is_stale

NOW = 1_800_000_000
ME = "ctl"


@pytest.mark.parametrize(
    ("line", "owner"),
    [
        ("ctl 42 1700000000", LockOwner("ctl", 42, 1_700_000_000)),
        ("ctl 42 1700000000\n", LockOwner("ctl", 42, 1_700_000_000)),
        ("", None),
        (None, None),
        ("ctl 42", None),
        ("ctl pid 1700000000", None),
        ("ctl 42 soon", None),
    ],
)
def test_owner_lines_parse_or_are_unreadable(line, owner):
    assert LockOwner.parse(line) == owner
    if owner:
        assert LockOwner.parse(owner.line()) == owner


@pytest.mark.parametrize(
    ("owner", "alive", "stale"),
    [
        (LockOwner(ME, 42, NOW - 10), True, False),  # a live run here: wait for it
        (LockOwner(ME, 42, NOW - 10), False, True),  # a run here that died: take over
        (LockOwner("other", 42, NOW - 10), False, False),  # elsewhere: its pid means nothing here
        (LockOwner("other", 42, NOW - STALE_AFTER_S - 1), True, True),  # too old wherever
        (LockOwner("other", 42, NOW - STALE_AFTER_S), True, False),
    ],
)
def test_a_lock_is_taken_over_only_from_a_dead_or_ancient_run(owner, alive, stale):
    assert is_stale(owner, NOW, ME, alive) is stale
