"""Turning the rules' command words into pyinfra commands."""

from __future__ import annotations

from collections.abc import Sequence

from pyinfra.api import QuoteString, StringCommand

from labtorch.rules.commands import Arg, Word


def shell_command(words: Sequence[Word]) -> StringCommand:
    """A pyinfra command from a builder's words: every :class:`Arg` quoted, flags as they are."""
    return StringCommand(*(QuoteString(w.text) if isinstance(w, Arg) else w for w in words))


def first_that_succeeds(attempts: list[StringCommand]) -> StringCommand:
    """One command that runs each attempt in turn until one exits 0 (``a || b || c``)."""
    bits: list[str | StringCommand] = []
    for attempt in attempts:
        bits += ["||", attempt] if bits else [attempt]
    return StringCommand(*bits)
