"""``conda list --revisions`` and ``conda install --revision N``: an env's history, and going
back to one of its states.

As conda 26.7.1 does it (``conda/history.py`` ``History.parse``, ``construct_states``,
``print_log``, ``object_log``; ``conda/cli/install.py`` ``install_revision``,
``revert_actions``): revision N is the N-th ``==>`` section of ``conda-meta/history`` (0 first;
Python indexing, so -1 is the last), its state the set of ``channel/subdir::dist`` strings that
the sections' ``+``/``-`` lines add up to (a section of plain lines is a whole state). Going back
matches each dist string of that state with the records of the channels (``-c`` and the condarc,
repodata fetched) and of the env itself; one that matches nothing is
``PackagesNotFoundInChannelsError`` before anything changes; an unknown revision is
``CondaIndexError: no such revision: N``. The transaction links and unlinks the difference, and
appends a history section like any other, with the env's requested specs as ``update specs``.
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import rattler

from labtorch_sim.conda import SUBDIRS, output, prefixes
from labtorch_sim.conda.context import Context
from labtorch_sim.conda.errors import CondaError, CondaValueError, PackagesNotFoundInChannelsError
from labtorch_sim.conda.records import from_rattler, history_line
from labtorch_sim.conda.solver import Solver
from labtorch_sim.conda.transaction import Transaction
from labtorch_sim.conda.virtual import virtual_packages

_HEAD = re.compile(r"==>\s*(.+?)\s*<==")
_SPECS = re.compile(r"#\s*(\w+)\s*specs:\s*(.+)?")


class CondaIndexError(CondaError):
    """A revision the history does not have."""


class PathNotFoundError(CondaError):
    """``conda list --revisions`` of an env without a history file."""

    def __init__(self, path: str) -> None:
        super().__init__(path, path=path)


def _history(prefix: Path) -> Path:
    return prefix / "conda-meta" / "history"


def parse(prefix: Path) -> list[tuple[str, set[str], list[str]]]:
    """The history's sections: (date, dist lines, comment lines)."""
    sections: list[tuple[str, set[str], list[str]]] = []
    path = _history(prefix)
    if not path.is_file():
        return sections
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        head = _HEAD.match(line)
        if head:
            sections.append((head.group(1), set(), []))
        elif sections and line.startswith("#"):
            sections[-1][2].append(line)
        elif sections:
            sections[-1][1].add(line)
    return sections


def _is_diff(lines: set[str]) -> bool:
    return any(line.startswith(("-", "+")) for line in lines)


def states(prefix: Path) -> list[tuple[str, set[str]]]:
    """Each revision's date and the set of dist strings the env held after it."""
    result = []
    current: set[str] = set()
    for date, lines, _ in parse(prefix):
        if not _is_diff(lines):
            current = set(lines)
        else:
            for line in lines:
                if line.startswith("-"):
                    current.discard(line[1:])
                elif line.startswith("+"):
                    current.add(line[1:])
                else:
                    raise CondaError(f"Did not expect: {line}")
        result.append((date, set(current)))
    return result


def _quad(dist: str) -> tuple[str, str, str, str]:
    channel, _, name_version_build = dist.rpartition("::")
    name, version, build = name_version_build.rsplit("-", 2)
    return name, version, build, channel or "<unknown>"


def _pretty(lines: set[str]) -> list[str]:
    if not _is_diff(lines):
        return sorted(lines)
    added: dict[str, str] = {}
    removed: dict[str, str] = {}
    for line in lines:
        name, version, _, channel = _quad(line[1:])
        if channel != "defaults":
            version += f" ({channel})"
        (removed if line.startswith("-") else added)[name.lower()] = version
    changed = set(added) & set(removed)
    return [
        *(f" {name}  {{{removed[name]} -> {added[name]}}}" for name in sorted(changed)),
        *(f"-{name}-{removed[name]}" for name in sorted(set(removed) - changed)),
        *(f"+{name}-{added[name]}" for name in sorted(set(added) - changed)),
    ]


def _object_log(prefix: Path) -> list[dict]:
    events = []
    for number, (date, lines, _) in enumerate(parse(prefix)):
        event: dict = {
            "date": date,
            "rev": number,
            "install": [],
            "remove": [],
            "upgrade": [],
            "downgrade": [],
        }
        if _is_diff(lines):
            added, removed = {}, {}
            for line in lines:
                name, version, build, channel = _quad(line[1:])
                (added if line.startswith("+") else removed)[name.lower()] = (
                    version,
                    build,
                    channel,
                )
            changed = set(added) & set(removed)
            for name in sorted(changed):
                old, new = removed[name], added[name]
                details = {"old": "-".join((name, *old)), "new": "-".join((name, *new))}
                event["upgrade" if new > old else "downgrade"].append(details)
            event["remove"] += ["-".join((n, *removed[n])) for n in sorted(set(removed) - changed)]
            event["install"] += ["-".join((n, *added[n])) for n in sorted(set(added) - changed)]
        else:
            event["install"] = sorted(lines)
        events.append(event)
    return events


def run_list(context: Context, args: argparse.Namespace) -> int:
    """``conda list --revisions [--json]``."""
    prefix = prefixes.target_prefix(context, args.name, args.prefix)
    path = _history(prefix)
    if not path.is_file():
        raise PathNotFoundError(str(path))
    if args.json:
        output.emit_json(_object_log(prefix))
        return 0
    for number, (date, lines, _) in enumerate(parse(prefix)):
        print(f"{date}  (rev {number})")
        for line in _pretty(lines):
            print(f"    {line}")
        print()
    return 0


def _requested_specs(prefix: Path, installed: list[rattler.PrefixRecord]) -> list[str]:
    """The env's user-requested specs, as ``History.get_requested_specs_map`` adds them up."""
    requested: dict[str, str] = {}
    for _, _, comments in parse(prefix):
        for comment in comments:
            match = _SPECS.match(comment)
            if not match or not match.group(2) or not match.group(2).startswith("["):
                continue
            specs = [spec for spec in ast.literal_eval(match.group(2)) if spec]
            names = {rattler.MatchSpec(spec, strict=False).name.normalized: spec for spec in specs}
            if match.group(1) in ("remove", "uninstall"):
                for name in names:
                    requested.pop(name, None)
            elif match.group(1) in ("update", "install", "create", "neutered"):
                requested.update(names)
    present = {record.name.normalized for record in installed}
    return [spec for name, spec in requested.items() if name in present]


def check_arguments(args: argparse.Namespace) -> None:
    """conda's checks of an install command line (``conda/cli/main_install.py``)."""
    if args.revision is not None and (args.file or args.specs):
        raise CondaValueError(
            "too many arguments, must supply one of command line packages, --file or --revision"
        )


async def reverted(
    context: Context,
    args: argparse.Namespace,
    prefix: Path,
    installed: list[rattler.PrefixRecord],
    channels: list,
) -> tuple[Transaction, list[str]]:
    """The transaction that takes the env back to revision ``args.revision``, and the specs
    the history records for it."""
    history = states(prefix)
    try:
        target = history[args.revision][1] if history else set()
    except IndexError:
        raise CondaIndexError(f"no such revision: {args.revision}") from None
    config = context.channel_config
    solver = Solver(
        channels,
        virtual_packages(context.environ, context.override_virtual_packages),
        context.package_cache,
        context.add_pip_as_python_dependency,
        context.solver,
    )
    names = sorted({_quad(dist)[0] for dist in target})
    found: list[rattler.RepoDataRecord] = []
    if names and channels:
        await solver.fetch_index(names)
        groups = await solver.gateway.query(
            [rattler.Channel(c.base_url) for c in channels], list(SUBDIRS), names, recursive=False
        )
        found = [record for group in groups for record in group]
    # The env's own records first: a package the env holds is kept as it is.
    candidates = [*installed, *found]
    chosen, missing = [], []
    for dist in sorted(target):
        match = next((r for r in candidates if history_line(config, from_rattler(r)) == dist), None)
        if match is None:
            # As conda prints the MatchSpec it made of the dist string.
            name, version, build, channel = _quad(dist)
            missing.append(f"{channel}::{name}=={version}={build}")
        else:
            chosen.append(match)
    if missing:
        raise PackagesNotFoundInChannelsError(missing, solver.channel_urls)
    specs = _requested_specs(prefix, installed)
    return Transaction(prefix, chosen, installed), specs
