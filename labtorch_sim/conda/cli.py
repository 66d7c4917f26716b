"""conda's command line, as far as labtorch uses it: parse, load the context, dispatch, report."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

from labtorch_sim.conda import CONDA_VERSION, output
from labtorch_sim.conda.commands import config, envs, info, install, listing, remove
from labtorch_sim.conda.context import Context
from labtorch_sim.conda.errors import CondaError

Command = Callable[[Context, argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    """Options every subcommand accepts."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true")
    common.add_argument("-q", "--quiet", action="store_true")
    common.add_argument("-y", "--yes", action="store_true")
    common.add_argument("-v", "--verbose", action="count", default=0)
    return common


def _target() -> argparse.ArgumentParser:
    """``-n NAME`` / ``-p PREFIX``."""
    target = argparse.ArgumentParser(add_help=False)
    group = target.add_mutually_exclusive_group()
    group.add_argument("-n", "--name")
    group.add_argument("-p", "--prefix")
    return target


def _add_install_parser(
    sub: argparse._SubParsersAction, name: str, parents: list, func: Command
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, parents=parents)
    parser.add_argument("specs", nargs="*")
    parser.add_argument("-c", "--channel", action="append", default=[])
    parser.add_argument("--override-channels", action="store_true")
    parser.add_argument("--file", action="append", default=[])
    parser.add_argument("--force-reinstall", action="store_true")
    parser.add_argument("-d", "--dry-run", action="store_true")
    parser.add_argument("--solver", help="accepted for compatibility; rattler solves")
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    common, target = _common(), _target()
    parser = argparse.ArgumentParser(prog="conda")
    parser.add_argument("-V", "--version", action="version", version=f"conda {CONDA_VERSION}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_install_parser(sub, "create", [common, target], install.run_create)
    installer = _add_install_parser(sub, "install", [common, target], install.run_install)
    installer.add_argument("--revision", type=int, metavar="REVISION")

    removal = sub.add_parser("remove", aliases=["uninstall"], parents=[common, target])
    removal.add_argument("packages", nargs="*")
    removal.add_argument("--all", action="store_true")
    removal.add_argument("-c", "--channel", action="append", default=[])
    removal.add_argument("--override-channels", action="store_true")
    removal.add_argument(
        "--offline", action="store_true", help="remove without fetching the channels' repodata"
    )
    removal.set_defaults(func=remove.run)

    lister = sub.add_parser("list", parents=[common, target])
    lister.add_argument("regex", nargs="?")
    lister.add_argument("-e", "--explicit", action="store_true")
    lister.add_argument("-r", "--revisions", action="store_true")
    hashes = lister.add_mutually_exclusive_group()
    hashes.add_argument("--md5", action="store_true")
    hashes.add_argument("--sha256", action="store_true")
    lister.set_defaults(func=listing.run)

    informer = sub.add_parser("info", parents=[common])
    informer.add_argument("-e", "--envs", action="store_true")
    informer.set_defaults(func=info.run)

    env = sub.add_parser("env").add_subparsers(dest="env_command", required=True)
    env.add_parser("list", parents=[common]).set_defaults(func=envs.run)

    configurer = sub.add_parser("config", parents=[common])
    configurer.add_argument("--show", nargs="*", metavar="KEY")
    configurer.add_argument("--show-sources", action="store_true")
    configurer.set_defaults(func=config.run)
    return parser


def main(argv: Sequence[str], environ: dict[str, str] | None = None) -> int:
    """Run one conda command; returns its exit status."""
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    try:
        context = Context.load(os.environ if environ is None else environ)
        return args.func(context, args)
    except CondaError as error:
        return output.report_error(error, args.json)
