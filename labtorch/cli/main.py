"""The ``labtorch`` command line: ``plan`` for one machine, ``report`` and ``mirrors`` for a
fleet, and the subcommands that installed extras add (``sim``, with the ``sim`` extra)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from labtorch.cli.lock import add_lock_parser
from labtorch.cli.mirrors import add_mirrors_parser
from labtorch.cli.plan import EXIT_BAD_INPUT, InputError, add_plan_parser
from labtorch.cli.report import add_report_parser
from labtorch.cli.rollback import add_rollback_parser
from labtorch.data.files import DataError
from labtorch.rules.model import RequestError

PLUGIN_GROUP = "labtorch.commands"
_BUILT_IN = {
    "plan": add_plan_parser,
    "report": add_report_parser,
    "mirrors": add_mirrors_parser,
    "lock": add_lock_parser,
    "rollback": add_rollback_parser,
}


def _extra_installed(distribution: str, extra: str) -> bool:
    """Whether every requirement of ``distribution``'s ``extra`` is installed."""
    from importlib import metadata

    from packaging.requirements import Requirement

    for line in metadata.requires(distribution) or ():
        requirement = Requirement(line)
        if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
            continue
        try:
            metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            return False
    return True


def _plugins() -> list:
    """The subcommands that installed packages add, each only where its extra is installed."""
    from importlib import metadata

    plugins = []
    for entry in metadata.entry_points(group=PLUGIN_GROUP):
        owner = entry.dist.name if entry.dist else None
        if owner and not all(_extra_installed(owner, extra) for extra in entry.extras):
            continue
        plugins.append(entry)
    return plugins


def build_parser(with_plugins: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labtorch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add in _BUILT_IN.values():
        add(commands)
    if with_plugins:
        for plugin in _plugins():
            plugin.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Looking up plugins reads every installed distribution's metadata: `labtorch plan` must
    # answer at once, so the built-in commands skip it.
    parser = build_parser(with_plugins=not argv or argv[0] not in _BUILT_IN)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (InputError, RequestError, DataError) as exc:
        print(f"labtorch {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
