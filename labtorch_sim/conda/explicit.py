"""``@EXPLICIT`` files: package URLs with optional hashes, installed without repodata or a solve.

Every package is downloaded into the package cache and checked before anything is linked, so a
wrong hash leaves no environment behind (conda raises ``CondaMultiError`` then).
"""

from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import rattler

from labtorch_sim.conda.errors import (
    ChecksumMismatchError,
    CondaError,
    CondaHTTPError,
    CondaMultiError,
    CondaValueError,
)

MARKER = "@EXPLICIT"
_DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class Entry:
    """One package line: its URL and, when the line has one, the expected digest."""

    url: str
    algorithm: str | None = None
    digest: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @classmethod
    def parse(cls, line: str) -> Entry:
        """``url[#md5|#sha256|#sha256:hex]``; a line without a scheme is a local path."""
        url, _, fragment = line.partition("#")
        if "://" not in url:
            url = Path(url).absolute().as_uri()
        fragment = fragment.removeprefix("sha256:")
        algorithm = {32: "md5", 64: "sha256"}.get(len(fragment))
        if fragment and algorithm is None:
            raise CondaValueError(f"Could not parse explicit URL: {line}")
        return cls(url, algorithm, fragment.lower() or None)


def is_explicit(lines: list[str]) -> bool:
    return MARKER in (line.strip() for line in lines)


def parse(lines: list[str]) -> list[Entry]:
    """The package lines after ``@EXPLICIT``; comments and blank lines are skipped."""
    body = [line.strip() for line in lines]
    body = body[body.index(MARKER) + 1 :]
    return [Entry.parse(line) for line in body if line and not line.startswith("#")]


@dataclass(frozen=True)
class Download:
    """A package file in the cache, checked against its entry."""

    entry: Entry
    path: Path


def _digests(data: bytes) -> dict[str, str]:
    return {"md5": hashlib.md5(data).hexdigest(), "sha256": hashlib.sha256(data).hexdigest()}


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except OSError as error:
        raise CondaHTTPError(url, str(error)) from error


def _mismatch(entry: Entry, data: bytes) -> str | None:
    """The actual digest of ``data`` when the entry expects a different one."""
    if entry.algorithm is None:
        return None
    actual = _digests(data)[entry.algorithm]
    return None if actual == entry.digest else actual


def _download(entry: Entry, cache: Path) -> Download:
    """The entry's file in the cache: reused when it checks out, downloaded otherwise."""
    target = cache / entry.filename
    if target.is_file() and _mismatch(entry, target.read_bytes()) is None:
        return Download(entry, target)
    data = _fetch(entry.url)
    actual = _mismatch(entry, data)
    if actual is not None:
        target.unlink(missing_ok=True)
        expected = str(entry.digest)
        raise ChecksumMismatchError(entry.url, str(target), str(entry.algorithm), expected, actual)
    cache.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return Download(entry, target)


def download_all(entries: list[Entry], cache: Path) -> list[Download]:
    """Download and check every entry; all failures together as one ``CondaMultiError``."""
    downloads, errors = [], []
    for entry in entries:
        try:
            downloads.append(_download(entry, cache))
        except CondaError as error:
            errors.append(error)
    if errors:
        raise CondaMultiError(errors)
    return downloads


async def records(downloads: list[Download]) -> list[rattler.RepoDataRecord]:
    """Records read from the downloaded archives, pointing at the local files."""
    return [await rattler.RepoDataRecord.from_package_archive(d.path) for d in downloads]
