"""Writing a config file the way labtorch owns one: atomically, with a one-time backup."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from io import StringIO

from pyinfra.api import FileUploadCommand, QuoteString, StringCommand

from labtorch.snapshot import BACKUP_SUFFIX


def replace_file(
    path: str, text: str, existed: bool, has_backup: bool
) -> Iterator[StringCommand | FileUploadCommand]:
    """Commands that replace ``path`` with ``text``: keep the user's original once, then upload
    to a temporary file beside it and rename, so a reader never sees half a file."""
    if existed and not has_backup:
        yield StringCommand("cp", "-p", QuoteString(path), QuoteString(path + BACKUP_SUFFIX))
    yield StringCommand("mkdir", "-p", QuoteString(posixpath.dirname(path) or "/"))
    temporary = f"{path}.labtorch-new"
    yield FileUploadCommand(StringIO(text), temporary)
    yield StringCommand("mv", "-f", QuoteString(temporary), QuoteString(path))
