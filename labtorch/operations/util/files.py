"""Writing a config file the way labtorch owns one: atomically, with a one-time backup."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, QuoteString, StringCommand

from labtorch.facts.host_state import BACKUP_SUFFIX
from labtorch.operations.checks import failing_command

ASIDE_SUFFIX = ".labtorch-aside"


def move_aside(path: str) -> StringCommand:
    """Move what is at ``path`` to ``path.labtorch-aside`` (an earlier one kept as ``~N~``):
    labtorch never deletes what it did not make."""
    return StringCommand(
        "mv", "-T", "--backup=numbered", QuoteString(path), QuoteString(path + ASIDE_SUFFIX)
    )


def replace_file(
    path: str,
    text: str,
    existed: bool,
    has_backup: bool,
    check: Callable[[str], StringCommand] | None = None,
) -> Iterator[StringCommand | FileUploadCommand]:
    """Commands that replace ``path`` with ``text``: keep the user's original once, then upload
    to a temporary file beside it and rename, so a reader never sees half a file. ``check``
    gives a command run on the temporary file before the rename (``nginx -t -c``): when it
    fails, the file in place is left as it was."""
    if existed and not has_backup:
        yield StringCommand("cp", "-p", QuoteString(path), QuoteString(path + BACKUP_SUFFIX))
    yield StringCommand("mkdir", "-p", QuoteString(posixpath.dirname(path) or "/"))
    temporary = f"{path}.labtorch-new"
    yield FileUploadCommand(StringIO(text), temporary)
    if check is not None:
        yield check(temporary)
    yield StringCommand("mv", "-f", QuoteString(temporary), QuoteString(path))


def update_owned_file(
    path: str,
    change: Callable[[], str | None],
    current: str | None,
    has_backup: bool,
    unchanged: str,
    kind: str | None = None,
) -> Iterator[StringCommand | FileUploadCommand]:
    """Commands that bring a file labtorch owns keys of to what ``change`` computes.

    ``change`` returns the new text, or None when the file already says what labtorch wants
    (then the op is a no-op described by ``unchanged``); a file it cannot read (ValueError), or
    something at ``path`` that is not a file (``kind``: a directory), fails this host only,
    saying what to do. ``path`` is the file itself: a link was resolved by the host state, so
    the file it points to is updated in place of the link.
    """
    if kind:
        yield failing_command(
            f"{path} is a {kind}, not a file: labtorch cannot write its settings there; "
            "move it away, then run again"
        )
        return
    try:
        text = change()
    except ValueError as exc:
        yield failing_command(f"{path}: {exc}; fix or remove it, then run again")
        return
    if text is None:
        host.noop(unchanged)
        return
    yield from replace_file(path, text, current is not None, has_backup)
