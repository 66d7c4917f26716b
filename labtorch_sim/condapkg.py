"""Writing conda packages (``.tar.bz2`` and ``.conda``) and indexing channel directories, for the
simulated mirror.

A package holds ``info/index.json``, ``info/paths.json``, ``info/files`` and its payload, as
conda-build writes them. A ``.conda`` package (format v2, as conda-package-handling writes it) is
an uncompressed zip of ``metadata.json``, ``pkg-<dist>.tar.zst`` (the payload) and
``info-<dist>.tar.zst`` (``info/``); the zstd frames here hold raw (stored) blocks, which every
zstd decoder reads and which need no compressor on this machine. ``index_channel`` writes
``<subdir>/repodata.json`` as conda-index does (``.tar.bz2`` under ``packages``, ``.conda`` under
``packages.conda``), and ``repodata.json.bz2`` beside it as TUNA's sync copies it, so that real
conda, rattler and the stand-in all read the channel the same way. TUNA copies
``repodata.json.zst`` and ``current_repodata.json`` only where upstream has them
(tuna/tunasync-scripts ``anaconda.py`` ``sync_repo``); the synthetic channels have neither, so the
mirror answers 404 for them, and real conda falls back to ``repodata.json``.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import struct
import tarfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# A fixed timestamp keeps package bytes, and so their hashes, identical from one build to the next.
TIMESTAMP_MS = 1_700_000_000_000
NOARCH = "noarch"
TAR_BZ2 = ".tar.bz2"
CONDA = ".conda"
_ARCH_OF_SUBDIR = {"64": "x86_64", "32": "x86"}
# zstd (RFC 8878): frame magic number, and the largest block a frame may hold.
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK = 128 * 1024
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class CondaPackage:
    """One conda package: its index record and the files it installs, relative to the prefix."""

    name: str
    version: str
    build: str
    subdir: str = "linux-64"
    build_number: int = 0
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    track_features: str = ""
    files: Mapping[str, bytes] = field(default_factory=dict)
    executables: frozenset[str] = frozenset()
    # The package format: TAR_BZ2 or CONDA.
    extension: str = TAR_BZ2

    @property
    def dist(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def filename(self) -> str:
        return f"{self.dist}{self.extension}"

    def index_record(self) -> dict:
        record = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
            "license": "BSD-3-Clause",
            "subdir": self.subdir,
            "timestamp": TIMESTAMP_MS,
        }
        if self.constrains:
            record["constrains"] = list(self.constrains)
        if self.track_features:
            record["track_features"] = self.track_features
        if self.subdir == NOARCH:
            record["noarch"] = "generic"
        else:
            platform, arch = self.subdir.split("-")
            record["arch"] = _ARCH_OF_SUBDIR.get(arch, arch)
            record["platform"] = platform
        return record


def _tar_member(
    tar: tarfile.TarFile, path: str, data: bytes, executable: bool = False, mtime: int | None = None
) -> None:
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.mtime = TIMESTAMP_MS // 1000 if mtime is None else mtime
    info.mode = 0o755 if executable else 0o644
    tar.addfile(info, io.BytesIO(data))


def _dumps(data: object) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()


def _info_files(package: CondaPackage) -> dict[str, bytes]:
    paths = [
        {
            "_path": path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        for path, data in sorted(package.files.items())
    ]
    return {
        "info/index.json": _dumps(package.index_record()),
        "info/paths.json": _dumps({"paths": paths, "paths_version": 1}),
        "info/files": "".join(f"{p}\n" for p in sorted(package.files)).encode(),
    }


def _tar(
    files: Mapping[str, bytes], executables: frozenset[str], mode: str, mtime: int | None = None
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        for path, data in files.items():
            _tar_member(tar, path, data, executable=path in executables, mtime=mtime)
    return buffer.getvalue()


def file_mtime(package: CondaPackage) -> int:
    """The time of the files of ``package``: fixed, but its own. Python trusts a cached .pyc
    whose source has the recorded mtime and size; with one time for every package, a module of
    another build that happens to have the same size (torchaudio's ``_build.py`` of 2.3.1 cu121
    and of 2.7.1 cu126) would run the other build's stale bytecode after a switch, which no real
    package does (real builds are made at different times)."""
    digest = hashlib.sha256(package.dist.encode()).digest()
    return TIMESTAMP_MS // 1000 + int.from_bytes(digest[:4], "big") % 10_000_000


def zstd_stored(data: bytes) -> bytes:
    """A zstd frame that holds ``data`` in raw blocks (RFC 8878 §3.1.1): single segment, with
    the 8-byte content size, no checksum."""
    frame = [struct.pack("<IB", _ZSTD_MAGIC, 0xE0), struct.pack("<Q", len(data))]
    chunks = [data[i : i + _ZSTD_BLOCK] for i in range(0, len(data), _ZSTD_BLOCK)] or [b""]
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        # Block header: bit 0 last block, bits 1-2 block type (0: raw), bits 3-23 size.
        header = (len(chunk) << 3) | int(last)
        frame += [header.to_bytes(3, "little"), chunk]
    return b"".join(frame)


def build_package(package: CondaPackage) -> bytes:
    """The bytes of ``package`` in its format, ``.tar.bz2`` or ``.conda``."""
    info = _info_files(package)
    payload = dict(sorted(package.files.items()))
    if package.extension == TAR_BZ2:
        return _tar({**info, **payload}, package.executables, "w:bz2", file_mtime(package))
    members = {
        "metadata.json": json.dumps({"conda_pkg_format_version": 2}).encode(),
        f"pkg-{package.dist}.tar.zst": zstd_stored(
            _tar(payload, package.executables, "w", file_mtime(package))
        ),
        f"info-{package.dist}.tar.zst": zstd_stored(_tar(info, frozenset(), "w")),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            member = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            member.external_attr = 0o644 << 16
            archive.writestr(member, data)
    return buffer.getvalue()


def write_package(package: CondaPackage, channel_dir: Path) -> Path:
    """Write ``package`` into ``channel_dir/<subdir>/`` and return its path."""
    target = channel_dir / package.subdir / package.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(build_package(package))
    return target


def _zstd_stored_content(frame: bytes) -> bytes:
    """The content of a frame written by :func:`zstd_stored` (raw blocks only)."""
    magic, descriptor = struct.unpack_from("<IB", frame)
    if magic != _ZSTD_MAGIC or descriptor != 0xE0:
        raise ValueError("not a zstd frame of raw blocks as zstd_stored writes them")
    offset, chunks = 13, []
    while True:
        header = int.from_bytes(frame[offset : offset + 3], "little")
        size, offset = header >> 3, offset + 3
        if (header >> 1) & 3:
            raise ValueError("compressed zstd block: only raw blocks are read here")
        chunks.append(frame[offset : offset + size])
        offset += size
        if header & 1:
            return b"".join(chunks)


def _read_index_json(package_file: Path) -> dict:
    if package_file.name.endswith(CONDA):
        with zipfile.ZipFile(package_file) as archive:
            name = next(n for n in archive.namelist() if n.startswith("info-"))
            info = _zstd_stored_content(archive.read(name))
        with tarfile.open(fileobj=io.BytesIO(info)) as tar:
            member = tar.extractfile("info/index.json")
            if member is None:
                raise ValueError(f"{package_file}: no info/index.json")
            return json.load(member)
    with tarfile.open(package_file, mode="r:bz2") as tar:
        member = tar.extractfile("info/index.json")
        if member is None:
            raise ValueError(f"{package_file}: no info/index.json")
        return json.load(member)


def index_channel(channel_dir: Path, subdirs: tuple[str, ...] = ("linux-64", NOARCH)) -> None:
    """Write ``repodata.json`` (and ``repodata.json.bz2``) for every subdir of a channel (an empty
    one where it has none)."""
    for subdir in sorted({*subdirs, *(p.name for p in channel_dir.iterdir() if p.is_dir())}):
        directory = channel_dir / subdir
        directory.mkdir(parents=True, exist_ok=True)
        packages: dict[str, dict[str, dict]] = {"packages": {}, "packages.conda": {}}
        for package_file in sorted(directory.iterdir()):
            if package_file.name.endswith(TAR_BZ2):
                key = "packages"
            elif package_file.name.endswith(CONDA):
                key = "packages.conda"
            else:
                continue
            data = package_file.read_bytes()
            record = _read_index_json(package_file)
            record.update(
                md5=hashlib.md5(data).hexdigest(),
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
            )
            packages[key][package_file.name] = record
        repodata = {
            "info": {"subdir": subdir},
            **packages,
            "removed": [],
            "repodata_version": 1,
        }
        text = json.dumps(repodata, indent=1, sort_keys=True)
        (directory / "repodata.json").write_text(text)
        (directory / "repodata.json.bz2").write_bytes(bz2.compress(text.encode()))
