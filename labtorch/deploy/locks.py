"""The deploy's locks (``torch_lock``): which lock a host installs, and making it when missing.

``auto`` (the default) takes the lock of the host's class from the lock directory when its
inputs still match the host's plan, and otherwise solves the class on the controller during the
run, once however many hosts share it, and writes it there; ``frozen`` takes only a lock that is
there and fails the host (before anything changes on it) when its class has none or a stale one,
naming the class and the command to run; ``off`` keeps the per-host solve.

The solve runs in a child process (``python -m labtorch.locking.solve``): pyinfra's hosts are
gevent greenlets, and a child process lets every other host go on while one class is solved.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pyinfra import host, logger

from labtorch.data.compat import load_compat
from labtorch.data.mirrors import Mirror
from labtorch.deploy.inputs import catalog_for, fallback_requests, host_facts, request_for
from labtorch.deploy.settings import Settings
from labtorch.facts.host_state import HostState
from labtorch.operations import locked
from labtorch.rules.envdiff import EnvDiff
from labtorch.rules.fallback import usable_fallbacks
from labtorch.rules.locks import (
    INDEX_FILE,
    LockedPackage,
    LockEntry,
    LockError,
    hash_kind,
    lock_class,
    lock_diff,
    rebase_pairs,
    usable,
)
from labtorch.rules.model import PIP, Plan, RequestError
from labtorch.rules.plan import plan_for_host

LOCK_DIR_ENV = "LABTORCH_LOCK_DIR"
AUTO, FROZEN, OFF = "auto", "frozen", "off"
SOLVE_TIMEOUT_S = 900

# One lock per class per run: hosts of a class wait for the first one's solve.
_guard = threading.Lock()
_class_locks: dict[str, threading.Lock] = {}
_solved_here: dict[str, str | None] = {}


def lock_directory(settings: Settings) -> Path:
    """``$LABTORCH_LOCK_DIR``, else ``torch_lock_dir`` (relative to where pyinfra runs)."""
    return Path(os.environ.get(LOCK_DIR_ENV) or settings.lock_dir)


@dataclass(frozen=True)
class LockUse:
    """The lock a host installs: its entry and the file its tool reads."""

    entry: LockEntry
    kind: str

    @cached_property
    def packages(self) -> list[LockedPackage]:
        return self.entry.packages_for(self.kind)


# The lock directory as last read, by the index's path and stamp: each host of a run looks its
# class up there, and the files are parsed and checked once, not once per host.
_read_cache: dict[Path, tuple[tuple[int, int], dict[str, LockEntry]]] = {}


def _read(directory: Path) -> dict[str, LockEntry]:
    from labtorch.locking import store

    index = directory / INDEX_FILE
    try:
        stat = index.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        return {}
    cached = _read_cache.get(index)
    if cached and cached[0] == stamp:
        return cached[1]
    entries = store.read(directory)
    _read_cache[index] = (stamp, entries)
    return entries


def _class_lock(lock_id: str) -> threading.Lock:
    with _guard:
        return _class_locks.setdefault(lock_id, threading.Lock())


def _solve(
    directory: Path, plan: Plan, fallbacks: list[Plan], host_state: HostState, mirror: str
) -> str | None:
    """Solve the host's class into the lock directory; the reason when it cannot be."""
    lock = lock_class(plan)
    job = {"inputs": lock.inputs(), "hosts": [host.name], "glibcs": [host_state.glibc],
           "mirror": mirror, "fallbacks": [lock_class(f).inputs() for f in fallbacks]}  # fmt: skip
    try:
        done = subprocess.run(
            [sys.executable, "-m", "labtorch.locking.solve", str(directory)],
            input=json.dumps([job]), capture_output=True, text=True, timeout=SOLVE_TIMEOUT_S,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"locking {lock.id} took over {SOLVE_TIMEOUT_S} s"
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return f"locking {lock.id} failed: {lines[-1] if lines else done.returncode}"
    failed = answer.get("failed", {})
    if lock.id in failed:
        return f"locking {lock.id} failed: {failed[lock.id]}"
    logger.info(f"    [{host.name}] labtorch: locked {lock.id} into {directory}")
    return None


def describe_mirror(mirror: Mirror) -> str:
    """A mirror as the index records it: its name and where it answers."""
    where = mirror.custom_channels or mirror.pypi
    return f"{mirror.name} ({where.rsplit('/anaconda/', 1)[0]})" if where else mirror.name


def choose(
    host_state: HostState, settings: Settings, plan: Plan, mirror: Mirror, fallbacks: list[Plan]
) -> LockUse | str | None:
    """The lock this host installs (None: ``torch_lock = "off"``), or why it has none."""
    if settings.lock == OFF:
        return None
    lock = lock_class(plan)
    directory = lock_directory(settings)
    kind = hash_kind(host_state.conda_version) if plan.installer != PIP else "sha256"
    try:
        entry = _read(directory).get(lock.id)
        problem = usable(entry, lock, host_state.glibc)
    except LockError as exc:
        entry, problem = None, str(exc)
    if problem is None and entry is not None:
        return LockUse(entry, kind)
    if settings.lock == FROZEN:
        return (
            f'torch_lock is "frozen" and {problem}: run `labtorch lock INVENTORY --limit '
            f"{host.name}` (it writes {directory}), review and commit it, and deploy again"
        )
    missing = [name for name in ("rattler", "uv") if importlib.util.find_spec(name) is None]
    if missing:
        logger.warning(
            f"[{host.name}] labtorch: {problem}, and this controller cannot lock it "
            f"({', '.join(missing)} missing: pip install 'labtorch[lock]'): the host solves "
            "for itself"
        )
        return None
    with _class_lock(lock.id):
        if lock.id not in _solved_here:
            _solved_here[lock.id] = _solve(
                directory, plan, fallbacks, host_state, describe_mirror(mirror)
            )
        failure = _solved_here[lock.id]
    if failure:
        return failure
    try:
        entry = _read(directory).get(lock.id)
    except LockError as exc:
        return str(exc)
    problem = usable(entry, lock, host_state.glibc)
    return problem or LockUse(entry, kind)  # type: ignore[arg-type]


def fallback_bases(plan: Plan, fallbacks: list[Plan]) -> list[list[tuple[str, str]]]:
    """Per fallback mirror, the bases that map the mirror's URLs to its own (same path)."""
    primary = lock_class(plan).endpoints
    return [rebase_pairs(primary, lock_class(fallback).endpoints) for fallback in fallbacks]


def diff(use: LockUse, host_state: HostState, plan: Plan, fallbacks: list[Plan]) -> EnvDiff:
    """The env against its lock, as the deploy's other steps read a difference (ok or not)."""
    packages = use.packages
    accepted = locked.accepted_urls(packages, fallback_bases(plan, fallbacks))
    found = lock_diff(
        packages, host_state.env_packages, plan.installer, accepted,
        foreign=host_state.env_is_foreign(plan.installer),
    )  # fmt: skip
    return EnvDiff(found.action, found.problems, foreign=found.foreign)


def install(
    use: LockUse,
    host_state: HostState,
    plan: Plan,
    fallbacks: list[Plan],
    python: str = "python3",
    cache: str | None = None,
) -> None:
    """Install the env from its lock (an operation that does nothing when it matches); through
    the lab cache at ``cache`` while it answers."""
    entry, packages = use.entry, use.packages
    bases = fallback_bases(plan, fallbacks)
    foreign = host_state.env_is_foreign(plan.installer)
    if plan.installer == PIP:
        locked.venv(
            name="Install torch into the venv",
            python=python, prefix=host_state.env_path, lock_id=entry.id, lock=entry.lock,
            packages=packages, installed=host_state.env_packages, fallbacks=bases,
            foreign=foreign, cache=cache,
        )  # fmt: skip
    else:
        locked.conda_env(
            name="Install torch into the conda env",
            conda=host_state.conda_exe, prefix=host_state.env_path, lock_id=entry.id,
            lock=entry.lock, packages=packages, kind=use.kind,
            installed=host_state.env_packages, fallbacks=bases, foreign=foreign, cache=cache,
        )  # fmt: skip


def plan_of(host_state: HostState, settings: Settings) -> tuple[Plan | str, str, list[Plan]]:
    """The host's plan as the deploy makes it (or why it has none), its mirror, and the plans of
    the fallback mirrors that pin the same."""
    request = request_for(settings)
    catalog = catalog_for(settings)
    mirror = describe_mirror(catalog[request.mirror])
    facts = host_facts(host_state, settings)

    def plan_with(wanted) -> Plan | str:
        try:
            plan = plan_for_host(facts, wanted, load_compat(), catalog)
        except RequestError as exc:
            return str(exc)
        return plan.reasons[-1] if plan.refused else plan

    plan = plan_with(request)
    if isinstance(plan, str):
        return plan, mirror, []
    candidates = {
        name: plan_with(fallback)
        for name, fallback in fallback_requests(settings, request, catalog).items()
    }
    return plan, mirror, usable_fallbacks(plan, candidates)[0]
