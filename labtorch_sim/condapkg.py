"""Writing conda packages (``.tar.bz2``) and indexing channel directories, for the simulated mirror.

A package holds ``info/index.json``, ``info/paths.json``, ``info/files`` and its payload, as
conda-build writes them; ``index_channel`` writes ``<subdir>/repodata.json`` as conda-index does,
so that real conda, rattler and the stand-in all read the channel the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# A fixed timestamp keeps package bytes, and so their hashes, identical from one build to the next.
TIMESTAMP_MS = 1_700_000_000_000
NOARCH = "noarch"
_ARCH_OF_SUBDIR = {"64": "x86_64", "32": "x86"}


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

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"

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


def _tar_member(tar: tarfile.TarFile, path: str, data: bytes, executable: bool = False) -> None:
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.mtime = TIMESTAMP_MS // 1000
    info.mode = 0o755 if executable else 0o644
    tar.addfile(info, io.BytesIO(data))


def _dumps(data: object) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()


def build_package(package: CondaPackage) -> bytes:
    """The bytes of ``package`` as a ``.tar.bz2`` conda package."""
    paths = [
        {
            "_path": path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        for path, data in sorted(package.files.items())
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
        _tar_member(tar, "info/index.json", _dumps(package.index_record()))
        _tar_member(tar, "info/paths.json", _dumps({"paths": paths, "paths_version": 1}))
        _tar_member(tar, "info/files", "".join(f"{p}\n" for p in sorted(package.files)).encode())
        for path, data in sorted(package.files.items()):
            _tar_member(tar, path, data, executable=path in package.executables)
    return buffer.getvalue()


def write_package(package: CondaPackage, channel_dir: Path) -> Path:
    """Write ``package`` into ``channel_dir/<subdir>/`` and return its path."""
    target = channel_dir / package.subdir / package.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(build_package(package))
    return target


def _read_index_json(package_file: Path) -> dict:
    with tarfile.open(package_file, mode="r:bz2") as tar:
        member = tar.extractfile("info/index.json")
        if member is None:
            raise ValueError(f"{package_file}: no info/index.json")
        return json.load(member)


def index_channel(channel_dir: Path, subdirs: tuple[str, ...] = ("linux-64", NOARCH)) -> None:
    """Write ``repodata.json`` for every subdir of a channel (an empty one where it has none)."""
    for subdir in sorted({*subdirs, *(p.name for p in channel_dir.iterdir() if p.is_dir())}):
        directory = channel_dir / subdir
        directory.mkdir(parents=True, exist_ok=True)
        packages = {}
        for package_file in sorted(directory.glob("*.tar.bz2")):
            data = package_file.read_bytes()
            record = _read_index_json(package_file)
            record.update(
                md5=hashlib.md5(data).hexdigest(),
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
            )
            packages[package_file.name] = record
        repodata = {
            "info": {"subdir": subdir},
            "packages": packages,
            "packages.conda": {},
            "removed": [],
            "repodata_version": 1,
        }
        (directory / "repodata.json").write_text(json.dumps(repodata, indent=1, sort_keys=True))
