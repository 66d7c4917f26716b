"""Shell composition for operations that must not quote what they join."""

from __future__ import annotations

from pyinfra.api import StringCommand


def first_that_succeeds(attempts: list[StringCommand]) -> StringCommand:
    """One command that runs each attempt in turn until one exits 0 (``a || b || c``)."""
    bits: list[str | StringCommand] = []
    for attempt in attempts:
        bits += ["||", attempt] if bits else [attempt]
    return StringCommand(*bits)
