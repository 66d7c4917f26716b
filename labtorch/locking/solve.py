"""Solving one lock class into a :class:`~labtorch.rules.locks.LockEntry` (its files rendered).

``python -m labtorch.locking.solve DIR`` reads jobs as JSON on stdin, solves each once and merges
them into the lock directory ``DIR``: the deploy runs it outside pyinfra's gevent process.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from labtorch.locking import store
from labtorch.locking.conda import SolveError, solve_conda
from labtorch.locking.pip import solve_pip, uv_binary
from labtorch.rules.locks import (
    EXPLICIT_FILES,
    REQUIREMENTS_FILE,
    LockClass,
    LockedPackage,
    LockEntry,
    oldest_glibc,
    pip_target,
    rebase_pairs,
    rebased,
    render_explicit,
    render_requirements,
    virtual_packages,
)
from labtorch.rules.model import PIP


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


# Every request labtorch's own solve makes says so: the mirror's log tells them from the hosts'.
USER_AGENT = f"labtorch-lock/{_version('labtorch')}"


@dataclass(frozen=True)
class Job:
    """A class to solve, for these hosts, against this mirror."""

    lock: LockClass
    hosts: tuple[str, ...]
    glibcs: tuple[str | None, ...] = ()
    mirror: str = ""
    # The same class on each fallback mirror: solved there when the mirror fails the solve.
    fallbacks: tuple[LockClass, ...] = ()

    def to_json(self) -> dict:
        return {
            "inputs": self.lock.inputs(),
            "hosts": list(self.hosts),
            "glibcs": list(self.glibcs),
            "mirror": self.mirror,
            "fallbacks": [fallback.inputs() for fallback in self.fallbacks],
        }

    @classmethod
    def from_json(cls, data: dict) -> Job:
        return cls(
            LockClass.from_inputs(data["inputs"]),
            tuple(data.get("hosts") or ()),
            tuple(data.get("glibcs") or ()),
            str(data.get("mirror") or ""),
            tuple(LockClass.from_inputs(f) for f in data.get("fallbacks") or ()),
        )


def _uv_version() -> str:
    try:
        import subprocess

        done = subprocess.run([uv_binary(), "--version"], capture_output=True, text=True)
        return done.stdout.strip() or "uv"
    except (OSError, SolveError):
        return "uv"


def _packages(lock: LockClass, glibc: str) -> tuple[list[LockedPackage], str | None]:
    """The packages of one class on one mirror, and the pip target."""
    if lock.installer == PIP:
        target = pip_target(lock, glibc)
        return solve_pip(lock, target), target
    with tempfile.TemporaryDirectory(prefix="labtorch-rattler-") as cache:
        return solve_conda(lock, virtual_packages(lock, glibc), Path(cache), USER_AGENT), None


def _solve_somewhere(job: Job, glibc: str) -> tuple[list[LockedPackage], str | None, LockClass]:
    """Solved against the mirror, else against each fallback in turn (its URLs then mapped back
    to the mirror's, the same relative path: hosts try the mirror first, then the fallbacks)."""
    try:
        packages, target = _packages(job.lock, glibc)
        return packages, target, job.lock
    except SolveError as first:
        for fallback in job.fallbacks:
            try:
                packages, target = _packages(fallback, glibc)
            except SolveError:
                continue
            pairs = rebase_pairs(fallback.endpoints, job.lock.endpoints)
            return rebased(packages, pairs), target, fallback
        raise first from None


def solve(job: Job, now: str | None = None) -> LockEntry:
    """Solve one class; SolveError says why it cannot be."""
    lock = job.lock
    glibc = oldest_glibc(job.glibcs)
    now = now or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    packages, target, solved = _solve_somewhere(job, glibc)
    where = job.mirror or "the mirror"
    if solved is not lock:
        where = f"a fallback of {where} ({', '.join(solved.endpoints)})"
    header = f"made {now} against {where}"
    if lock.installer == PIP:
        files = {
            f"{lock.id}/{REQUIREMENTS_FILE}": render_requirements(lock.id, lock, packages, header)
        }
        return LockEntry(
            lock=lock, created=now, solver=_uv_version(), mirror=job.mirror,
            sources=solved.endpoints, hosts=job.hosts, files=files, glibc=glibc,
            target=target, packages=len(packages),
        )  # fmt: skip
    files = {
        f"{lock.id}/{name}": render_explicit(lock.id, lock, packages, kind, header)
        for kind, name in EXPLICIT_FILES.items()
    }
    return LockEntry(
        lock=lock, created=now, solver=f"py-rattler {_version('py-rattler')}", mirror=job.mirror,
        sources=solved.endpoints, hosts=job.hosts, files=files, glibc=glibc,
        virtual=tuple(virtual_packages(lock, glibc)), packages=len(packages),
    )  # fmt: skip


def solve_all(jobs: Sequence[Job]) -> tuple[list[LockEntry], dict[str, str]]:
    """Each job solved once: the entries, and the reason of each class that failed."""
    entries, failures = [], {}
    for job in jobs:
        try:
            entries.append(solve(job))
        except SolveError as exc:
            failures[job.lock.id] = str(exc)
    return entries, failures


def main(argv: Sequence[str] | None = None) -> int:
    """Solve the jobs on stdin into the lock directory ``argv[0]``; prints
    ``{"solved": [...], "failed": {id: reason}}``."""
    args = list(sys.argv[1:] if argv is None else argv)
    jobs = [Job.from_json(item) for item in json.load(sys.stdin)]
    entries, failures = solve_all(jobs)
    if entries:
        store.merge(Path(args[0]), entries)
    json.dump({"solved": [e.id for e in entries], "failed": failures}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
