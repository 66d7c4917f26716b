"""Printing results and errors: conda's JSON formatting, or short human-readable text."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labtorch_sim.conda.errors import CondaError


def dumps(data: Any) -> str:
    """JSON as conda prints it (``conda/common/serialize/json.py``): sorted, indented."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def emit_json(data: Any) -> None:
    print(dumps(data))


def report_error(error: CondaError, as_json: bool) -> int:
    """Print an error the way conda does: JSON on stdout, or ``Name: message`` on stderr."""
    if as_json:
        emit_json(error.dump_map())
    else:
        print(f"\n{type(error).__name__}: {error}", file=sys.stderr)
    return 1


def print_plan(prefix: str, specs: Sequence[str], actions: dict[str, Any]) -> None:
    """The package plan conda shows before it changes an environment."""
    lines = ["## Package Plan ##", "", f"  environment location: {prefix}", ""]
    if specs:
        lines += ["  added / updated specs:", *(f"    - {s}" for s in specs), ""]
    for key, title in (
        ("LINK", "NEW packages will be INSTALLED"),
        ("UNLINK", "packages will be REMOVED"),
    ):
        if actions.get(key):
            lines += [f"The following {title}:", ""]
            lines += [
                f"  {e['name']:<20} {e['channel']}/{e['platform']}::{e['dist_name']}"
                for e in actions[key]
            ]
            lines.append("")
    lines += [
        "Preparing transaction: done",
        "Verifying transaction: done",
        "Executing transaction: done",
    ]
    print("\n".join(lines))


def report_transaction(
    args: argparse.Namespace, prefix: Path, specs: Sequence[str], actions: dict[str, Any]
) -> None:
    """conda's success report of a create/install/remove: JSON, or the plan unless ``-q``."""
    if args.json:
        report = {"actions": actions, "prefix": str(prefix), "success": True}
        if getattr(args, "dry_run", False):
            report["dry_run"] = True
        emit_json(report)
    elif not args.quiet:
        print_plan(str(prefix), specs, actions)
