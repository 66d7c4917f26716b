"""Solving specs against channels with rattler, and explaining failures as conda does.

Only ``<channel>/<subdir>/repodata.json`` is requested: no ``current_repodata.json``, no
compressed or sharded variants, no notices, since the simulated mirror counts its requests.

How a failure reads depends on the solver conda is configured with. Both call a requested spec
that no channel has ``PackagesNotFoundInChannelsError``. A dependency that nothing provides is,
for the classic solver, one more "not available from current channels" package (conda-cli.md
§4, observed); for libmamba (Miniconda's default) a ``LibMambaUnsatisfiableError`` whose
problems read "nothing provides <dependency> needed by <package>-<version>-<build>"
(conda-libmamba-solver ``solver.py`` ``_parse_problems`` and ``_maybe_raise_for_problems``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import rattler
from rattler.exceptions import GatewayError, SolverError

from labtorch_sim.conda import SUBDIRS
from labtorch_sim.conda.channels import Channel
from labtorch_sim.conda.errors import (
    CondaError,
    CondaHTTPError,
    LibMambaUnsatisfiableError,
    PackagesNotFoundInChannelsError,
    UnavailableInvalidChannel,
    UnsatisfiableError,
)
from labtorch_sim.conda.records import conda_spec
from labtorch_sim.conda.virtual import VirtualPackage

_REPODATA_ONLY = rattler.SourceConfig(
    zstd_enabled=False,
    bz2_enabled=False,
    sharded_enabled=False,
    jlap_enabled=False,
    cache_action="no-cache",
)


class Solver:
    """Solves against fixed channels and virtual packages, sharing one repodata gateway."""

    def __init__(
        self,
        channels: Sequence[Channel],
        virtual: Sequence[VirtualPackage],
        package_cache: Path,
        add_pip_as_python_dependency: bool,
        solver: str = "libmamba",
    ) -> None:
        self.channels = list(channels)
        self.virtual = list(virtual)
        self.add_pip = add_pip_as_python_dependency
        self.solver = solver
        self.gateway = rattler.Gateway(
            cache_dir=package_cache / "cache", default_config=_REPODATA_ONLY
        )

    @property
    def channel_urls(self) -> list[str]:
        return [channel.base_url for channel in self.channels]

    @property
    def _sources(self) -> list[rattler.Channel]:
        return [rattler.Channel(url) for url in self.channel_urls]

    async def solve(
        self,
        specs: Sequence[str],
        locked: Sequence[rattler.RepoDataRecord] = (),
        keep: Sequence[str] = (),
    ) -> list[rattler.RepoDataRecord]:
        """Records for ``specs`` plus the packages named in ``keep``, preferring ``locked``."""
        match_specs = [rattler.MatchSpec(s, strict=False) for s in [*specs, *keep]]
        try:
            return await rattler.solve(
                self._sources,
                match_specs,
                gateway=self.gateway,
                platforms=list(SUBDIRS),
                locked_packages=list(locked),
                virtual_packages=[v.to_rattler() for v in self.virtual],
                add_pip_as_python_dependency=self.add_pip,
            )
        except GatewayError as error:
            raise self._fetch_error(str(error)) from error
        except SolverError as error:
            requested, absent = await self._missing(list(specs))
            if absent and self.solver == "libmamba":
                raise LibMambaUnsatisfiableError(
                    [
                        f"nothing provides {dependency} needed by {needer}"
                        for dependency, needer in absent
                    ]
                ) from error
            missing = [*requested, *(conda_spec(dependency) for dependency, _ in absent)]
            if missing:
                missing = list(dict.fromkeys(missing))
                raise PackagesNotFoundInChannelsError(missing, self.channel_urls) from error
            raise UnsatisfiableError(str(error)) from error

    async def fetch_index(self, names: Sequence[str]) -> None:
        """Download the channels' repodata as a solve does (a removal solves too), raising
        conda's error for a channel that cannot be read."""
        if not self.channels:
            return
        try:
            await self.gateway.query(self._sources, list(SUBDIRS), list(names), recursive=False)
        except GatewayError as error:
            raise self._fetch_error(str(error)) from error

    def _fetch_error(self, text: str) -> CondaError:
        """conda's error for a failed repodata download, naming the channel it failed for."""
        failed = [c for c in self.channels if f"{c.base_url}/" in text]
        if failed and "404" in text:
            return UnavailableInvalidChannel(str(failed[0].name), failed[0].base_url, text)
        return CondaHTTPError(failed[0].base_url if failed else "", text)

    async def _missing(self, specs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
        """What nothing provides: requested specs, and dependencies (with the package that
        needs each, as ``name-version-build``) of requested packages that cannot be installed."""
        parsed = [rattler.MatchSpec(s, strict=False) for s in specs]
        # Query by name: a full spec would leave out the records it does not match.
        names = [spec.name.normalized for spec in parsed] + (["pip"] if self.add_pip else [])
        found = await self.gateway.query(self._sources, list(SUBDIRS), names, recursive=True)
        records = [record for group in found for record in group]
        index = _Index(records, self.virtual, self.add_pip)
        requested: list[str] = []
        absent: list[tuple[str, str]] = []
        for text, spec in zip(specs, parsed, strict=True):
            candidates = index.matching(spec)
            if not candidates:
                requested.append(text)
            elif not any(index.viable(r) for r in candidates):
                absent += index.absent_dependencies(candidates)
        return list(dict.fromkeys(requested)), list(dict.fromkeys(absent))


class _Index:
    """Records by name, with which of them can be installed at all (every dependency available)."""

    def __init__(
        self,
        records: list[rattler.RepoDataRecord],
        virtual: Sequence[VirtualPackage],
        add_pip: bool,
    ) -> None:
        self.add_pip = add_pip
        self.by_name: dict[str, list[rattler.PackageRecord]] = defaultdict(list)
        for record in records:
            self.by_name[record.name.normalized].append(record)
        for package in virtual:
            self.by_name[package.name].append(
                rattler.PackageRecord(
                    package.name, package.version, rattler.BuildString(package.build), 0, "noarch"
                )
            )
        self._viable: dict[str, bool] = {}

    def matching(self, spec: rattler.MatchSpec) -> list[rattler.PackageRecord]:
        return [r for r in self.by_name.get(spec.name.normalized, []) if spec.matches(r)]

    def _providers(self, dependency: str) -> list[rattler.PackageRecord]:
        return self.matching(rattler.MatchSpec(dependency, strict=False))

    def _depends(self, record: rattler.PackageRecord) -> list[str]:
        """Dependencies as the solver sees them: conda makes every python depend on pip."""
        implied = ["pip"] if self.add_pip and record.name.normalized == "python" else []
        return [*record.depends, *implied]

    def viable(self, record: rattler.PackageRecord) -> bool:
        key = f"{record.name.normalized}={record.version}={record.build}={record.subdir}"
        if key not in self._viable:
            # Assume viable while visiting, so that dependency cycles terminate.
            self._viable[key] = True
            self._viable[key] = all(
                any(self.viable(p) for p in self._providers(d)) for d in self._depends(record)
            )
        return self._viable[key]

    def absent_dependencies(self, records: list[rattler.PackageRecord]) -> list[tuple[str, str]]:
        """The dependencies, followed through unviable providers, that no record provides, each
        with the package that needs it (``name-version-build``)."""
        absent: list[tuple[str, str]] = []
        seen: set[str] = set()
        pending = list(records)
        while pending:
            record = pending.pop()
            for dependency in self._depends(record):
                if dependency in seen:
                    continue
                seen.add(dependency)
                providers = self._providers(dependency)
                if not providers:
                    needer = f"{record.name.normalized}-{record.version}-{record.build}"
                    absent.append((dependency, needer))
                elif not any(self.viable(p) for p in providers):
                    pending += providers
        return absent
