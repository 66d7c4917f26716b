"""``conda list``: the packages of an environment, as JSON, a table or an ``@EXPLICIT`` file."""

from __future__ import annotations

import argparse
import re

import rattler

from labtorch_sim.conda import CONDA_VERSION, PLATFORM, output, prefixes
from labtorch_sim.conda.commands import revisions
from labtorch_sim.conda.context import Context
from labtorch_sim.conda.records import from_rattler, list_entry

_EXPLICIT_HEADER = (
    "# This file may be used to create an environment using:\n"
    "# $ conda create --name <env> --file <this file>\n"
    f"# platform: {PLATFORM}\n"
    f"# created-by: conda {CONDA_VERSION}\n"
    "@EXPLICIT"
)


def run(context: Context, args: argparse.Namespace) -> int:
    if args.revisions:
        return revisions.run_list(context, args)
    prefix = prefixes.target_prefix(context, args.name, args.prefix)
    prefixes.require_environment(prefix)
    records = prefixes.installed(prefix)
    if args.regex:
        records = [r for r in records if re.search(args.regex, r.name.normalized)]
    if args.explicit:
        print(_explicit(records, "md5" if args.md5 else "sha256" if args.sha256 else None))
        return 0
    entries = [list_entry(context.channel_config, from_rattler(r)) for r in records]
    if args.json:
        output.emit_json(entries)
    else:
        print(_table(str(prefix), entries))
    return 0


def _explicit(records: list[rattler.PrefixRecord], algorithm: str | None) -> str:
    """conda's ``print_explicit``: URLs in dependency order, with the chosen hash as fragment."""
    lines = [_EXPLICIT_HEADER]
    order = [r.name.normalized for r in rattler.PackageRecord.sort_topologically(records)]
    for record in sorted(records, key=lambda r: order.index(r.name.normalized)):
        digest = getattr(record, algorithm) if algorithm else None
        lines.append(f"{record.url}#{digest.hex()}" if digest else record.url)
    return "\n".join(lines)


def _table(prefix: str, entries: list[dict]) -> str:
    lines = [
        f"# packages in environment at {prefix}:",
        "#",
        f"# {'Name':<23} {'Version':<15} {'Build':>15}  Channel",
    ]
    for e in entries:
        lines.append(f"{e['name']:<25} {e['version']:<15} {e['build_string']:>15}  {e['channel']}")
    return "\n".join(lines)
