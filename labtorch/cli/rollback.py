"""``labtorch rollback INVENTORY``: put each targeted host's env back to a state it was in.

Before every change of an env the deploy records the env's exact state in it (the newest
``torch_env_history`` states are kept). ``--to previous`` (the default) puts back the newest
state kept: the env as it was before the last change; ``--to N`` state N (``labtorch report``
shows how many each env keeps). The state the env is in is recorded first, so a second rollback
undoes the first. conda envs go back with ``conda install --revision``, or the state's explicit
list when that does not give exactly its packages; venvs with the state's hash-checked
requirements. Each env is then probed. A host without history, without the env, or without
that state fails alone with the reason. The next deploy moves the envs to what the settings say
again: set ``torch_release`` (or the variant) back to keep them where the rollback put them.

Exit status: 0 every targeted host is back (or already was); 1 a host failed; 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from labtorch.cli.pyinfra_cli import run_pyinfra, why_it_stopped
from labtorch.rules.history import RESULT_ENV, TO_ENV, parse_target

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
# By path, not imported: the CLI must not pay for pyinfra before it runs it.
DEPLOY_FILE = Path(__file__).resolve().parents[1] / "deploy" / "rollback_run.py"
PYINFRA_TIMEOUT_S = 3600


class RollbackError(Exception):
    """The rollback could not run; the message says why."""


def add_rollback_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``rollback`` to a parser's subcommands."""
    parser = subparsers.add_parser(
        "rollback",
        help="put each host's env back to a state recorded before a change",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inventory", metavar="INVENTORY", help="pyinfra inventory file")
    parser.add_argument(
        "--limit",
        metavar="PATTERN",
        action="append",
        default=[],
        help="only the hosts of this group or name glob (pyinfra's); repeat for several",
    )
    parser.add_argument(
        "--to",
        default="previous",
        metavar="previous|N",
        help="the state to put back: the newest kept (default), or state N",
    )
    parser.add_argument("--dry", action="store_true", help="say what would be done, change nothing")
    parser.add_argument(
        "--data",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a setting for this run, as pyinfra's --data (torch_installer=pip: the venvs)",
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="write the results as JSON")
    parser.set_defaults(handler=rollback_command)
    return parser


def run_rollback(
    inventory: str, to: str, limits: list[str], dry: bool, data: list[str]
) -> list[dict]:
    """Run the rollback deploy through the pyinfra CLI; each targeted host's result."""
    if not Path(inventory).is_file():
        raise RollbackError(f"no inventory file {inventory}")
    try:
        to = str(parse_target(to))
    except ValueError as exc:
        raise RollbackError(str(exc)) from None
    options = [word for limit in limits for word in ("--limit", limit)]
    options += [word for item in data for word in ("--data", item)]
    options += ["--dry"] if dry else []
    with tempfile.TemporaryDirectory(prefix="labtorch-rollback-") as directory:
        results = Path(directory) / "results.json"
        env = {**os.environ, TO_ENV: to, RESULT_ENV: str(results)}
        try:
            done = run_pyinfra([*options, inventory, str(DEPLOY_FILE)], PYINFRA_TIMEOUT_S, env)
        except subprocess.TimeoutExpired:
            raise RollbackError(f"pyinfra took over {PYINFRA_TIMEOUT_S} s") from None
        if not results.is_file():
            why = why_it_stopped(done)
            raise RollbackError(f"pyinfra could not run the rollback on {inventory}: {why}")
        return json.loads(results.read_text())["hosts"]


def _detail(result: dict) -> str:
    state = result.get("state") or {}
    if result["status"] == "failed":
        step = f"{result['step']}: " if result.get("step") else ""
        return f"{step}{result.get('reason') or 'failed'}"
    number = f"state {state.get('id')}"
    if result["status"] == "would restore":
        return f"{number} (recorded {state.get('time')}: {state.get('reason')})"
    if result["status"] == "unchanged":
        return f"already {number}"
    probe = "probe passed" if (result.get("probe") or {}).get("passed") else "probe failed"
    return f"{number} by {result.get('how')}; {probe}; undo: --to {result.get('recorded')}"


def render(results: list[dict]) -> str:
    """The results as a table, one line per host."""
    rows = [("host", "result", "env", "torch", "detail")]
    for result in results:
        before = result.get("from") or "-"
        after = result.get("to") or "-"
        torch = after if result["status"] == "unchanged" else f"{before} -> {after}"
        if result["status"] == "failed" and not result.get("state"):
            torch = "-"
        rows.append(
            (result["name"], result["status"], result.get("env") or "-", torch, _detail(result))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    ]
    failed = sum(result["status"] == "failed" for result in results)
    lines.append(f"{len(results) - failed} of {len(results)} hosts ok, {failed} failed")
    return "\n".join(lines)


def rollback_command(args: argparse.Namespace) -> int:
    try:
        results = run_rollback(args.inventory, args.to, args.limit, args.dry, args.data)
    except RollbackError as exc:
        print(f"labtorch rollback: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps({"hosts": results}, indent=2) + "\n")
    return EXIT_FAILED if any(result["status"] == "failed" for result in results) else EXIT_OK
