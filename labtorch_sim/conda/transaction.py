"""Turning a target package set into an environment: link with rattler, then record it like conda.

rattler writes ``conda-meta/<dist>.json``; the stand-in completes those records the way conda
writes them (full channel URL with subdir, the original download URL, ``requested_spec``),
appends ``conda-meta/history`` and registers the environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import rattler

from labtorch_sim.conda import history, prefixes
from labtorch_sim.conda.context import Context
from labtorch_sim.conda.records import (
    Record,
    channel_url,
    dist_name,
    fetch_entry,
    from_rattler,
    history_line,
    list_entry,
)

# rattler drops a cache tag into every prefix it creates; conda environments have none.
_RATTLER_TAG = "CACHEDIR.TAG"


def _key(record: Record) -> tuple[str, str]:
    return dist_name(record), record["subdir"]


def _changed(
    records: list[Record], other: Sequence[rattler.RepoDataRecord], reinstall: frozenset[str]
) -> list[Record]:
    """The records that ``other`` lacks, or that are reinstalled, by name."""
    present = {_key(from_rattler(r)) for r in other}
    chosen = [r for r in records if _key(r) not in present or r["name"] in reinstall]
    return sorted(chosen, key=lambda r: r["name"])


@dataclass
class Transaction:
    """The move of one environment from its installed packages to ``target``."""

    prefix: Path
    target: Sequence[rattler.RepoDataRecord]
    installed: Sequence[rattler.PrefixRecord] = ()
    # Package name -> the spec the user asked for it with.
    requested: Mapping[str, str] = field(default_factory=dict)
    # Download URL -> original URL, for packages fetched ahead of rattler (explicit files).
    origins: Mapping[str, str] = field(default_factory=dict)
    reinstall: frozenset[str] = frozenset()

    def _record(self, record: rattler.RepoDataRecord) -> Record:
        data = from_rattler(record)
        data["url"] = self.origins.get(data["url"], data["url"])
        return data

    @cached_property
    def link(self) -> list[Record]:
        records = [self._record(r) for r in self.target]
        return _changed(records, self.installed, self.reinstall)

    @cached_property
    def unlink(self) -> list[Record]:
        records = [from_rattler(r) for r in self.installed]
        return _changed(records, self.target, self.reinstall)

    @property
    def is_empty(self) -> bool:
        return not self.link and not self.unlink

    def actions(self, context: Context, package_cache: Path) -> dict[str, Any]:
        """The ``actions`` object of conda's JSON report."""
        config = context.channel_config
        link = self.link
        actions: dict[str, Any] = {
            "FETCH": [fetch_entry(r) for r in link if not (package_cache / dist_name(r)).is_dir()],
            "LINK": [list_entry(config, r) for r in link],
            "PREFIX": str(self.prefix),
        }
        if self.unlink:
            actions["UNLINK"] = [list_entry(config, r) for r in self.unlink]
        return actions

    async def execute(self, context: Context, revision: history.Revision) -> None:
        """Link and unlink, complete the metadata, write history, register the environment."""
        had_tag = (self.prefix / _RATTLER_TAG).exists()
        (self.prefix / "conda-meta").mkdir(parents=True, exist_ok=True)
        linked = self.link
        await rattler.install(
            list(self.target),
            target_prefix=self.prefix,
            cache_dir=context.package_cache,
            installed_packages=list(self.installed),
            reinstall_packages=set(self.reinstall),
            show_progress=False,
        )
        if not had_tag:
            (self.prefix / _RATTLER_TAG).unlink(missing_ok=True)
        for record in linked:
            self._complete_metadata(record)
        history.append(self.prefix, revision)
        prefixes.register(context, self.prefix)

    def _complete_metadata(self, record: Record) -> None:
        path = self.prefix / "conda-meta" / f"{dist_name(record)}.json"
        data = json.loads(path.read_text())
        spec = self.requested.get(record["name"])
        data.update(
            url=record["url"],
            channel=channel_url(record),
            requested_spec=spec or "None",
            requested_specs=[spec] if spec else [],
        )
        path.write_text(json.dumps(data, indent=2))

    def revision(
        self, context: Context, command: str, kind: str, specs: Sequence[str]
    ) -> history.Revision:
        config = context.channel_config
        return history.Revision(
            command=command,
            unlinked=[history_line(config, r) for r in self.unlink],
            linked=[history_line(config, r) for r in self.link],
            specs_kind=kind,
            specs=specs,
        )
