"""The lock directory: the index ``labtorch-lock.yaml`` and each class's files beside it.

Writers take an exclusive ``flock`` on the directory's ``.labtorch-lock.flock`` and replace each
file atomically, the index last, so that a reader (a deploy) never sees half a lock, and two
writers (classes solved in parallel during a deploy) never lose each other's class.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from labtorch.rules.locks import INDEX_FILE, LockEntry, LockError, parse_index, render_index

FLOCK = ".labtorch-lock.flock"


def read(directory: Path) -> dict[str, LockEntry]:
    """The classes of the lock directory (none when it has no index); LockError when the index
    or a file does not check out."""
    index = Path(directory) / INDEX_FILE
    try:
        text = index.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise LockError(f"{index}: cannot be read: {exc.strerror}") from None

    def read_file(relative: str) -> str | None:
        path = Path(directory) / relative
        if ".." in Path(relative).parts or Path(relative).is_absolute():
            raise LockError(f"{index}: {relative} is outside the lock directory")
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            return None

    return parse_index(text, read_file, str(index))


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / FLOCK).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge(
    directory: Path,
    entries: Iterable[LockEntry],
    keep: Callable[[LockEntry], bool] = lambda entry: True,
) -> dict[str, LockEntry]:
    """Write ``entries`` into the directory, keeping the classes already there for which
    ``keep`` holds (a class of the same id is replaced); files of dropped classes go."""
    directory = Path(directory)
    with exclusive(directory):
        try:
            current = read(directory)
        except LockError:
            current = {}
        merged = {lock_id: entry for lock_id, entry in current.items() if keep(entry)}
        merged.update({entry.id: entry for entry in entries})
        for entry in merged.values():
            for relative, text in entry.files.items():
                path = directory / relative
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    _replace(path, text)
        _replace(directory / INDEX_FILE, render_index(merged.values()))
        for lock_id in set(current) - set(merged):
            for relative in current[lock_id].files:
                (directory / relative).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                (directory / lock_id).rmdir()
        return merged
