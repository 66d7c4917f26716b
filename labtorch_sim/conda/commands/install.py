"""``conda create`` and ``conda install``: from specs (solved) or from an ``@EXPLICIT`` file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import rattler
from rattler.exceptions import InvalidMatchSpecError

from labtorch_sim.conda import explicit, history, output, prefixes
from labtorch_sim.conda.channels import Channel
from labtorch_sim.conda.commands import revisions
from labtorch_sim.conda.context import Context
from labtorch_sim.conda.errors import (
    ArgumentError,
    CondaError,
    CondaHTTPError,
    CondaMultiError,
    CondaValueError,
    InvalidMatchSpec,
)
from labtorch_sim.conda.records import channel_url
from labtorch_sim.conda.solver import Solver
from labtorch_sim.conda.transaction import Transaction
from labtorch_sim.conda.virtual import virtual_packages


def run_create(context: Context, args: argparse.Namespace) -> int:
    return asyncio.run(_apply(context, args, create=True))


def run_install(context: Context, args: argparse.Namespace) -> int:
    return asyncio.run(_apply(context, args, create=False))


async def _apply(context: Context, args: argparse.Namespace, create: bool) -> int:
    """Plan the change (solve, or fetch an explicit file) before touching the target at all."""
    prefix = prefixes.target_prefix(context, args.name, args.prefix)
    if create and prefix == context.root_prefix:
        raise CondaValueError("The target prefix is the base prefix. Aborting.")
    if not create:
        prefixes.require_environment(prefix)
    installed = [] if create else prefixes.installed(prefix)
    lines = _read_files(args.file)
    if getattr(args, "revision", None) is not None:
        revisions.check_arguments(args)
        transaction, specs = await revisions.reverted(
            context, args, prefix, installed, channels(context, args)
        )
    elif explicit.is_explicit(lines):
        transaction, specs = await _explicit(context, prefix, lines, installed)
    else:
        specs = [*args.specs, *_spec_lines(lines)]
        transaction = await _solved(context, args, prefix, specs, installed)
    if not create and transaction.is_empty:
        return _nothing_to_do(args)
    actions = transaction.actions(context, context.package_cache)
    if not args.dry_run:
        if create and prefixes.is_environment(prefix):
            # With --yes conda replaces an environment that already exists at the target.
            shutil.rmtree(prefix)
        command = context.command_line(args.argv)
        revision = transaction.revision(context, command, "update", specs)
        if create:
            await _create(context, transaction, revision)
        else:
            await _install(context, transaction, revision)
    output.report_transaction(args, prefix, specs, actions)
    return 0


async def _create(context: Context, transaction: Transaction, revision: history.Revision) -> None:
    """Create the environment, or leave no prefix at all.

    Real conda downloads and extracts every package before it creates the prefix, and rolls a
    failed link back, so a failed ``create`` leaves nothing behind (conda-cli.md §5: "no env is
    created"; conda ``core/link.py`` ``UnlinkLinkTransaction.execute`` reverses what it linked).
    rattler downloads and links in one step, so the stand-in removes the prefix instead.
    """
    try:
        await transaction.execute(context, revision)
    except BaseException as error:
        shutil.rmtree(transaction.prefix, ignore_errors=True)
        prefixes.unregister(context, transaction.prefix)
        raise _install_error(error, transaction) from error


async def _install(context: Context, transaction: Transaction, revision: history.Revision) -> None:
    """Change the environment, or leave it exactly as it was (files, conda-meta, history).

    Real conda fetches every package before it unlinks or links anything, and rolls a failed
    link back (conda ``core/link.py``); the stand-in keeps a copy of the environment and puts it
    back when rattler fails part way.
    """
    with _snapshot(context, transaction.prefix) as restore:
        try:
            await transaction.execute(context, revision)
        except BaseException as error:
            restore()
            raise _install_error(error, transaction) from error


@contextlib.contextmanager
def _snapshot(context: Context, prefix: Path) -> Iterator[Callable[[], None]]:
    """A copy of ``prefix`` beside the package cache, and a function that puts it back."""
    holder = Path(tempfile.mkdtemp(prefix=".labtorch-rollback-", dir=_writable(context, prefix)))
    copy = holder / "env"
    try:
        shutil.copytree(prefix, copy, symlinks=True)

        def restore() -> None:
            shutil.rmtree(prefix, ignore_errors=True)
            shutil.move(copy, prefix)

        yield restore
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _writable(context: Context, prefix: Path) -> Path:
    """A directory for the rollback copy: the package cache (or, failing that, the prefix's
    parent), never an envs directory where ``conda env list`` would find it."""
    cache = context.package_cache
    cache.mkdir(parents=True, exist_ok=True)
    return cache if os.access(cache, os.W_OK) else prefix.parent


def _install_error(error: BaseException, transaction: Transaction) -> BaseException:
    """conda's error for a failed transaction: a failed download is ``CondaMultiError`` of
    ``CondaHTTPError`` (conda ``core/package_cache_data.py`` ``ProgressiveFetchExtract``)."""
    if isinstance(error, CondaError) or not isinstance(error, Exception):
        return error
    text = str(error)
    urls = [record["url"] for record in transaction.link if record["url"] in text]
    if urls or "http" in text.lower():
        return CondaMultiError([CondaHTTPError(urls[0] if urls else "", text)])
    return CondaError(f"the transaction failed and was rolled back: {text}")


def _read_files(paths: list[str]) -> list[str]:
    lines: list[str] = []
    for path in paths:
        try:
            lines += Path(path).read_text().splitlines()
        except OSError as error:
            raise CondaValueError(f"could not read file: {path}: {error}") from error
    return lines


def _spec_lines(lines: list[str]) -> list[str]:
    """Specs of a plain ``--file``: one a line, comments dropped."""
    return [s for s in (line.split("#", 1)[0].strip() for line in lines) if s]


def channels(context: Context, args: argparse.Namespace) -> list[Channel]:
    """The channels of ``-c``, then those of the condarc unless ``--override-channels``."""
    if args.override_channels and not args.channel:
        raise ArgumentError(
            "At least one -c / --channel flag must be supplied when using --override-channels."
        )
    values = [*args.channel, *([] if args.override_channels else context.channels)]
    return context.channel_config.expand(values)


def _spec_name(spec: str) -> str:
    try:
        name = rattler.MatchSpec(spec, strict=False).name
    except InvalidMatchSpecError as error:
        raise InvalidMatchSpec(spec, str(error)) from error
    return name.normalized


async def _solved(
    context: Context,
    args: argparse.Namespace,
    prefix: Path,
    specs: list[str],
    installed: list[rattler.PrefixRecord],
) -> Transaction:
    """Solve the requested specs together with what the environment already has."""
    requested = {_spec_name(spec): spec for spec in specs}
    solver = Solver(
        channels(context, args),
        virtual_packages(context.environ, context.override_virtual_packages),
        context.package_cache,
        context.add_pip_as_python_dependency,
        context.solver,
    )
    # Installed packages stay (by name) and are preferred as they are (locked), so that an
    # install changes only what the new specs need.
    keep = [r.name.normalized for r in installed if r.name.normalized not in requested]
    reinstall = frozenset(requested) if args.force_reinstall else frozenset()
    # Real conda matches a channel-qualified spec (``url::name``) only against records of that
    # channel; a forced reinstall must not be satisfied by the installed record it replaces.
    locked = [r for r in installed if r.name.normalized not in reinstall]
    target = await solver.solve(specs, locked=locked, keep=keep)
    return Transaction(prefix, target, installed, requested, reinstall=reinstall)


async def _explicit(
    context: Context, prefix: Path, lines: list[str], installed: list[rattler.PrefixRecord]
) -> tuple[Transaction, list[str]]:
    """Download and check the listed packages; they replace same-named installed ones."""
    downloads = explicit.download_all(explicit.parse(lines), context.package_cache)
    new = await explicit.records(downloads)
    origins = {record.url: d.entry.url for record, d in zip(new, downloads, strict=True)}
    specs = {
        r.name.normalized: f"{channel_url({'url': origins[r.url]})}::"
        f"{r.name.normalized}=={r.version}={r.build}"
        for r in new
    }
    kept = [r for r in installed if r.name.normalized not in specs]
    # Real conda relinks a listed package unless the installed record matches it by channel too
    # (conda ``misc.install_explicit_packages``: the spec of the URL's record, channel included):
    # the same file from another channel is replaced.
    wanted = {r.name.normalized: channel_url({"url": origins[r.url]}) for r in new}
    elsewhere = frozenset(
        r.name.normalized
        for r in installed
        if r.name.normalized in wanted
        and r.url is not None
        and channel_url({"url": str(r.url)}) != wanted[r.name.normalized]
    )
    transaction = Transaction(prefix, [*new, *kept], installed, specs, origins, elsewhere)
    return transaction, list(specs.values())


def _nothing_to_do(args: argparse.Namespace) -> int:
    message = "All requested packages already installed."
    if args.json:
        output.emit_json({"message": message, "success": True})
    else:
        print(f"\n# {message}\n")
    return 0
