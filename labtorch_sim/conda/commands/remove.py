"""``conda remove``: packages (and what depends on them), or a whole environment.

Removing packages goes online as real conda does: conda 26.7.1 ``cli/main_remove.py`` solves the
removal with the channels of ``-c`` and the condarc (``context.channels``), and the solve fetches
their repodata (``core/solve.py`` ``_prepare``), so a blocked or unreachable channel fails the
removal before anything is unlinked. ``--offline`` (conda's ``offline`` setting) removes without
a request. ``--all`` removes the prefix without a solve, so it never goes online.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from pathlib import Path

import rattler

from labtorch_sim.conda import output, prefixes
from labtorch_sim.conda.commands.install import channels
from labtorch_sim.conda.context import Context
from labtorch_sim.conda.errors import ArgumentError, CondaEnvironmentError, PackagesNotFoundError
from labtorch_sim.conda.records import from_rattler, list_entry
from labtorch_sim.conda.solver import Solver
from labtorch_sim.conda.transaction import Transaction
from labtorch_sim.conda.virtual import virtual_packages


def run(context: Context, args: argparse.Namespace) -> int:
    prefix = prefixes.target_prefix(context, args.name, args.prefix)
    prefixes.require_environment(prefix)
    installed = prefixes.installed(prefix)
    if args.all:
        actions = _remove_environment(context, prefix, installed)
    elif args.packages:
        actions = _remove_packages(context, args, prefix, installed)
    else:
        raise ArgumentError(
            'No package names supplied,\n       try "conda remove -h" for more details'
        )
    output.report_transaction(args, prefix, [], actions)
    return 0


def _remove_environment(
    context: Context, prefix: Path, installed: list[rattler.PrefixRecord]
) -> dict:
    if prefix == context.root_prefix:
        raise CondaEnvironmentError(
            "cannot remove root environment, add -n NAME or -p PREFIX option"
        )
    unlink = [list_entry(context.channel_config, from_rattler(r)) for r in installed]
    shutil.rmtree(prefix)
    prefixes.unregister(context, prefix)
    return {"PREFIX": str(prefix), "UNLINK": unlink}


def _dependents(installed: list[rattler.PrefixRecord], names: set[str]) -> set[str]:
    """``names`` and every installed package that depends on them, directly or not."""
    doomed = set(names)
    while True:
        more = {
            r.name.normalized
            for r in installed
            if r.name.normalized not in doomed and any(d.split()[0] in doomed for d in r.depends)
        }
        if not more:
            return doomed
        doomed |= more


def _solver(context: Context, args: argparse.Namespace) -> Solver:
    """The solver a removal uses: the channels of ``-c`` and the condarc, as for an install."""
    return Solver(
        channels(context, args),
        virtual_packages(context.environ, context.override_virtual_packages),
        context.package_cache,
        context.add_pip_as_python_dependency,
        context.solver,
    )


def _remove_packages(
    context: Context, args: argparse.Namespace, prefix: Path, installed: list[rattler.PrefixRecord]
) -> dict:
    present = {r.name.normalized for r in installed}
    missing = [name for name in args.packages if name not in present]
    if missing:
        raise PackagesNotFoundError(missing)
    if not (args.offline or context.offline):
        asyncio.run(_solver(context, args).fetch_index(sorted(present)))
    doomed = _dependents(installed, set(args.packages))
    target = [r for r in installed if r.name.normalized not in doomed]
    transaction = Transaction(prefix, target, installed)
    actions = transaction.actions(context, context.package_cache)
    revision = transaction.revision(
        context, context.command_line(args.argv), "remove", args.packages
    )
    asyncio.run(transaction.execute(context, revision))
    return actions
