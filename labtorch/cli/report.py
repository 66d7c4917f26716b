"""``labtorch report INVENTORY``: audit a fleet's torch envs without changing anything.

Every conda env and venv with torch on each host is probed with its own python, and judged
against the host's GPUs: a CPU build left on a GPU host, kernels that do not cover a GPU, a
matmul that fails. The table shows which host fails and why; ``--json`` and ``--html`` write
the report (schema: ``labtorch.report.model``).

Exit status: 0 every host passes; 1 a host fails (or cannot be reached); 2 bad input, such as
an inventory that does not exist or that pyinfra cannot load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from labtorch.cli.pyinfra_cli import run_pyinfra, why_it_stopped
from labtorch.report.html import render_html
from labtorch.report.model import UNREACHABLE, audit_record, audit_report
from labtorch.report.table import render_table

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# By name, not imported: `labtorch plan` shares the parser and must not pay for pyinfra.
FACT = "labtorch.facts.pyinfra_facts.TorchEnvs"
UNREADABLE = "the audit's output from the host could not be read"
PYINFRA_TIMEOUT_S = 1800


class AuditError(Exception):
    """The audit could not run; the message says why."""


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``report`` to a parser's subcommands."""
    report = subparsers.add_parser(
        "report",
        help="audit every torch env of a fleet, read-only; exit 1 when a host fails",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument("inventory", metavar="INVENTORY", help="pyinfra inventory file")
    report.add_argument("--json", metavar="FILE", type=Path, help="write the report as JSON")
    report.add_argument("--html", metavar="FILE", type=Path, help="write the report as HTML")
    report.add_argument(
        "--limit", metavar="PATTERN", help="only the hosts of this group or name glob (pyinfra's)"
    )
    report.set_defaults(handler=report_command)
    return report


def _pyinfra(inventory: str, *operation: str, limit: str | None = None) -> Any:
    """Run the pyinfra CLI read-only and return the JSON it prints on stdout."""
    options = ["--limit", limit] if limit else []
    try:
        done = run_pyinfra(["--json", *options, inventory, *operation], PYINFRA_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AuditError(f"pyinfra {' '.join(operation)} took over {PYINFRA_TIMEOUT_S} s") from None
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        why = why_it_stopped(done)
        raise AuditError(f"pyinfra could not load {inventory}: {why}") from None


def _in_limit(hosts: list[dict], limit: str | None) -> list[dict]:
    """The hosts pyinfra's ``--limit`` keeps: a group's, else the names matching the glob."""
    if limit is None:
        return hosts
    if any(limit in host["groups"] for host in hosts):
        return [host for host in hosts if limit in host["groups"]]
    return [host for host in hosts if fnmatch(host["name"], limit)]


def audit(inventory: str, limit: str | None = None) -> dict:
    """Audit every host of the inventory (within ``limit``): the report, as a dict."""
    if not Path(inventory).is_file():
        raise AuditError(f"no inventory file {inventory}")
    hosts = _in_limit(list(_pyinfra(inventory, "debug-inventory")), limit)
    found = _pyinfra(inventory, "fact", FACT, limit=limit)
    facts = found.get(FACT, {}) if isinstance(found, dict) else {}
    records = [
        audit_record(
            host["name"],
            host["groups"],
            facts.get(host["name"]),
            UNREADABLE if host["name"] in facts else UNREACHABLE,
        )
        for host in hosts
    ]
    return audit_report(records)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise AuditError(f"cannot write {path}: {exc.strerror}") from None


def report_command(args: argparse.Namespace) -> int:
    try:
        report = audit(args.inventory, args.limit)
        print(render_table(report))
        if args.json:
            _write(args.json, json.dumps(report, indent=2) + "\n")
        if args.html:
            _write(args.html, render_html(report))
    except AuditError as exc:
        print(f"labtorch report: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK if report["summary"]["failed"] == 0 else EXIT_FAILED
