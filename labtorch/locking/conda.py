"""The conda solve of a lock class, with py-rattler on the controller.

rattler is the solver and repodata gateway of pixi (resolvo, a SAT solver, and conda's
MatchSpec semantics): it reads the channels' ``repodata.json`` from the mirror and returns
records with their URLs, md5 and sha256. The solve sees the class's virtual packages, never the
controller's own (no GPU, another glibc), so the result is what the hosts would get.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import rattler
from rattler.exceptions import GatewayError, SolverError

from labtorch.rules.locks import LockClass, LockedPackage

SUBDIRS = {"linux-64": ("linux-64", "noarch"), "linux-aarch64": ("linux-aarch64", "noarch")}
# Only <channel>/<subdir>/repodata.json: no .zst, .bz2, shards or JLAP, as conda reads a mirror
# that lacks them (TUNA copies them only where upstream has them), and nothing stale.
_REPODATA_ONLY = dict(
    zstd_enabled=False,
    bz2_enabled=False,
    sharded_enabled=False,
    cache_action="no-cache",
)


class SolveError(RuntimeError):
    """The class cannot be solved against the mirror: the message says why."""


def _virtual(packages: Sequence[tuple[str, str, str]]) -> list[rattler.GenericVirtualPackage]:
    return [
        rattler.GenericVirtualPackage(
            rattler.PackageName(name), rattler.Version(version), rattler.BuildString(build)
        )
        for name, version, build in packages
    ]


def specs_of(lock: LockClass) -> list[str]:
    """What the deploy's own create asks for: the env's Python and every pin."""
    return [f"python={lock.python}", *lock.specs]


async def _solve(
    lock: LockClass, virtual: Sequence[tuple[str, str, str]], cache: Path, user_agent: str
) -> list[rattler.RepoDataRecord]:
    client = rattler.Client(user_agent=user_agent)
    gateway = rattler.Gateway(
        cache_dir=cache, default_config=rattler.SourceConfig(**_REPODATA_ONLY), client=client
    )
    return await rattler.solve(
        [rattler.Channel(url) for url in lock.channels],
        [rattler.MatchSpec(spec, strict=False) for spec in specs_of(lock)],
        gateway=gateway,
        platforms=list(SUBDIRS.get(lock.platform, (lock.platform, "noarch"))),
        virtual_packages=_virtual(virtual),
        # conda's default (rattler's is False): python depends on pip.
        add_pip_as_python_dependency=True,
    )


def solve_conda(
    lock: LockClass, virtual: Sequence[tuple[str, str, str]], cache: Path, user_agent: str
) -> list[LockedPackage]:
    """The packages of a conda class, each with its URL on the mirror and both digests."""
    try:
        records = asyncio.run(_solve(lock, virtual, cache, user_agent))
    except GatewayError as exc:
        raise SolveError(f"cannot read the channels' repodata from the mirror: {exc}") from None
    except SolverError as exc:
        raise SolveError(f"no solution for {', '.join(specs_of(lock))}: {exc}") from None
    packages = []
    for record in records:
        if not record.sha256 or not record.md5:
            raise SolveError(
                f"{record.file_name}: the channel's repodata has no sha256 or md5 for it, so a "
                "lock could not check it"
            )
        packages.append(
            LockedPackage(
                name=record.name.normalized,
                version=str(record.version),
                build=str(record.build),
                url=str(record.url),
                sha256=record.sha256.hex(),
                md5=record.md5.hex(),
                depends=tuple(record.depends),
            )
        )
    return packages
