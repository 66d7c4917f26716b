"""``conda env list`` (and ``conda info --envs``): the environments conda knows of."""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path
from typing import Any

from labtorch_sim.conda import output, prefixes
from labtorch_sim.conda.context import Context


def _timestamp(path: Path, created: bool) -> str:
    stat = path.stat()
    seconds = stat.st_ctime if created else stat.st_mtime
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat()


def details(context: Context, prefix: Path) -> dict[str, Any]:
    """One ``envs_details`` entry."""
    meta = prefix / "conda-meta"
    return {
        "active": str(prefix) == (context.active_prefix or str(context.root_prefix)),
        "base": prefix == context.root_prefix,
        "created": _timestamp(meta, created=True),
        "frozen": (meta / "frozen").exists(),
        "last_modified": _timestamp(meta, created=False),
        "name": prefixes.environment_name(context, prefix),
        "writable": os.access(prefix, os.W_OK),
    }


def listing(context: Context) -> dict[str, Any]:
    found = prefixes.environments(context)
    return {
        "envs": [str(p) for p in found],
        "envs_details": {str(p): details(context, p) for p in found},
    }


def run(context: Context, args: argparse.Namespace) -> int:
    data = listing(context)
    if args.json:
        output.emit_json(data)
        return 0
    print("# conda environments:\n#")
    for prefix, entry in data["envs_details"].items():
        marker = "*" if entry["active"] else " "
        print(f"{entry['name']:<20} {marker} {prefix}")
    return 0
