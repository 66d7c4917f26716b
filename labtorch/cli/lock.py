"""``labtorch lock INVENTORY``: one lock per class of hosts, solved once each, on this machine.

Each host's snapshot is read through pyinfra (the deploy's own fact, one command per host) and
planned as the deploy plans it; hosts whose plans agree (platform, Python, release, variant,
route and channels, toolkit) form a class, and each class is solved once, here, against the
configured mirror: conda classes with py-rattler and the class's virtual packages (``__cuda`` at
the plan's CUDA, the oldest glibc of its hosts, ``__linux``, ``__archspec``), pip classes with
``uv pip compile`` for the class's platform and Python. The locks go to the lock directory
(``--output``, else the hosts' ``torch_lock_dir``, ``locks`` by default): an ``@EXPLICIT`` file
per hash conda reads, or hashed pip requirements, and the index ``labtorch-lock.yaml``.

A class whose lock is there and still matches is kept as it is (its files do not change) unless
``--upgrade``; a class no host of the inventory uses any more is dropped (with ``--limit``, only
those of the hosts it keeps are considered). Review the diff, commit it, and deploy with
``torch_lock = "frozen"``.

Exit status: 0 every class locked; 1 a host could not be planned or a class not solved (the
others are written); 2 bad input (the inventory, the lock extra missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from labtorch.cli.pyinfra_cli import run_pyinfra, why_it_stopped

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
PYINFRA_TIMEOUT_S = 1800
# By path, run by pyinfra as a deploy file: it reads and plans, and changes nothing.
COLLECTOR = Path(__file__).resolve().parents[1] / "locking" / "collect.py"


class LockCommandError(Exception):
    """``labtorch lock`` could not run; the message says why."""


def add_lock_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``lock`` to a parser's subcommands."""
    lock = subparsers.add_parser(
        "lock",
        help="solve one lock per class of hosts, here, and write the lock directory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lock.add_argument("inventory", metavar="INVENTORY", help="pyinfra inventory file")
    lock.add_argument(
        "--limit", metavar="PATTERN", help="only the hosts of this group or name glob (pyinfra's)"
    )
    lock.add_argument(
        "--output", metavar="DIR", type=Path, help="the lock directory (default: torch_lock_dir)"
    )
    lock.add_argument(
        "--upgrade", action="store_true", help="solve every class again, even one whose lock holds"
    )
    lock.set_defaults(handler=lock_command)
    return lock


def collect(inventory: str, limit: str | None) -> list[dict]:
    """Each host's record (its class inputs or refusal), read through the pyinfra CLI."""
    if not Path(inventory).is_file():
        raise LockCommandError(f"no inventory file {inventory}")
    from labtorch.locking.collect import COLLECT_ENV

    with tempfile.TemporaryDirectory(prefix="labtorch-lock-") as scratch:
        arguments = ["--json", *(["--limit", limit] if limit else []), inventory, str(COLLECTOR)]
        try:
            done = run_pyinfra(arguments, PYINFRA_TIMEOUT_S, {**os.environ, COLLECT_ENV: scratch})
        except subprocess.TimeoutExpired:
            raise LockCommandError(f"pyinfra took over {PYINFRA_TIMEOUT_S} s") from None
        records = [json.loads(p.read_text()) for p in sorted(Path(scratch).glob("*.json"))]
        if not records and done.returncode != 0:
            why = why_it_stopped(done)
            raise LockCommandError(f"pyinfra could not read {inventory}: {why}")
        if done.stdout.strip():
            try:
                failed = json.loads(done.stdout).get("results", {}).get("failed_hosts", [])
            except (json.JSONDecodeError, AttributeError):
                failed = []
            seen = {record["host"] for record in records}
            records += [
                {"host": name, "refusal": "the host could not be reached"}
                for name in failed
                if name not in seen
            ]
        return records


def lock_inventory(
    inventory: str,
    limit: str | None = None,
    output: Path | None = None,
    upgrade: bool = False,
    out=sys.stdout,
) -> int:
    """Lock every class of the inventory's hosts; the exit status."""
    from labtorch.locking import store
    from labtorch.locking.solve import Job, solve_all
    from labtorch.rules.locks import LockClass, LockError, usable

    records = collect(inventory, limit)
    problems = [f"{r['host']}: no lock: {r['refusal']}" for r in records if "inputs" not in r]
    planned = [r for r in records if "inputs" in r]
    directories = {Path(output) if output else Path(r.get("lock_dir") or "locks") for r in planned}
    status = EXIT_OK
    for directory in sorted(directories) or [Path(output or "locks")]:
        mine = [r for r in planned if output or Path(r.get("lock_dir") or "locks") == directory]
        classes: dict[str, list[dict]] = defaultdict(list)
        for record in mine:
            classes[LockClass.from_inputs(record["inputs"]).id].append(record)
        try:
            current = store.read(directory)
        except LockError as exc:
            print(f"labtorch lock: {exc}; every class is solved again", file=sys.stderr)
            current = {}
        jobs, kept = [], []
        targeted = {r["host"] for r in records}
        for lock_id, members in sorted(classes.items()):
            lock = LockClass.from_inputs(members[0]["inputs"])
            entry = current.get(lock_id)
            others = set(entry.hosts) - targeted if entry else set()
            hosts = tuple(sorted({r["host"] for r in members} | others))
            glibcs = tuple(r.get("glibc") for r in members)
            still = all(usable(entry, lock, r.get("glibc")) is None for r in members)
            if still and not upgrade and entry is not None:
                kept.append(entry if set(entry.hosts) == set(hosts) else _with_hosts(entry, hosts))
                continue
            fallbacks = tuple(LockClass.from_inputs(f) for f in members[0].get("fallbacks") or ())
            jobs.append(Job(lock, hosts, glibcs, members[0].get("mirror") or "", fallbacks))
        entries, failures = solve_all(jobs)
        store.merge(
            directory,
            [*kept, *entries],
            # With --limit, the classes of the other hosts stay; a class no targeted host uses
            # any more goes when no other host uses it.
            keep=lambda entry, targeted=targeted: bool(set(entry.hosts) - targeted),
        )
        for entry in entries:
            print(f"locked  {entry.id}: {entry.packages} packages for "
                  f"{', '.join(entry.hosts)}", file=out)  # fmt: skip
        for entry in kept:
            print(f"kept    {entry.id}: the lock holds for {', '.join(entry.hosts)}", file=out)
        for lock_id, reason in failures.items():
            problems.append(f"{lock_id}: not locked: {reason}")
        print(f"written to {directory}", file=out)
    for problem in problems:
        print(f"labtorch lock: {problem}", file=sys.stderr)
        status = EXIT_FAILED
    return status


def _with_hosts(entry, hosts: tuple[str, ...]):
    from dataclasses import replace

    return replace(entry, hosts=hosts)


def lock_command(args: argparse.Namespace) -> int:
    try:
        return lock_inventory(args.inventory, args.limit, args.output, args.upgrade)
    except LockCommandError as exc:
        print(f"labtorch lock: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ImportError as exc:
        print(
            f"labtorch lock: error: {exc.name or exc} is missing: pip install 'labtorch[lock]'",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
