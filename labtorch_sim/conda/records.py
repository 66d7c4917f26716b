"""Package records as conda prints and stores them.

Records travel as plain dicts in the ``conda-meta/*.json`` layout (rattler's ``to_json()`` has
the same keys), so that solved, downloaded and installed packages share one representation.
"""

from __future__ import annotations

import json
from typing import Any

import rattler

from labtorch_sim.conda.channels import ChannelConfig, record_channel

Record = dict[str, Any]

# The fields of a ``FETCH`` item in ``conda create/install --json`` (conda-cli.md §3.5).
_FETCH_FIELDS = (
    "arch", "build", "build_number", "channel", "constrains", "depends", "fn", "license", "md5",
    "name", "noarch", "package_type", "platform", "sha256", "size", "subdir", "timestamp", "url",
    "version",
)  # fmt: skip


def from_rattler(record: rattler.RepoDataRecord) -> Record:
    return json.loads(record.to_json())


def dist_name(record: Record) -> str:
    return f"{record['name']}-{record['version']}-{record['build']}"


def channel_url(record: Record) -> str:
    """The channel URL with subdir, as conda writes it into ``conda-meta`` (``.../linux-64``)."""
    return str(record["url"]).rsplit("/", 1)[0]


def list_entry(config: ChannelConfig, record: Record) -> dict[str, Any]:
    """A ``conda list --json`` item: exactly conda's ``dist_fields_dump`` fields."""
    channel = record_channel(config, record["url"])
    return {
        "base_url": channel.base_url,
        "build_number": record.get("build_number", 0),
        "build_string": record["build"],
        "channel": channel.name,
        "dist_name": dist_name(record),
        "name": record["name"],
        "platform": record["subdir"],
        "version": record["version"],
    }


def fetch_entry(record: Record) -> dict[str, Any]:
    """A ``FETCH`` item: the repodata record of a package to download."""
    noarch = record.get("noarch")
    derived = {
        "channel": channel_url(record),
        "constrains": record.get("constrains", []),
        "depends": record.get("depends", []),
        "package_type": f"noarch_{noarch}" if noarch else None,
    }
    merged = {**record, **derived}
    return {key: merged.get(key) for key in _FETCH_FIELDS}


def history_line(config: ChannelConfig, record: Record) -> str:
    """``<canonical channel>/<subdir>::<dist>``, the form of conda's history ``+``/``-`` lines."""
    channel = record_channel(config, record["url"])
    return f"{config.canonical_name(channel)}/{record['subdir']}::{dist_name(record)}"


def conda_spec(dependency: str) -> str:
    """A repodata dependency (``name version build``) written as conda prints a MatchSpec."""
    name, *rest = dependency.split()
    if not rest:
        return name
    version, build = rest[0], (rest[1] if len(rest) > 1 else None)
    if any(c in version for c in "<>!|,~"):
        fields = [f"version='{version}'", *([f"build={build}"] if build else [])]
        return f"{name}[{','.join(fields)}]"
    pinned = f"{name}={version[:-2]}" if version.endswith(".*") else f"{name}=={version}"
    return f"{pinned}={build}" if build else pinned
