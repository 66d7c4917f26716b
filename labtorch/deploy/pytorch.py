"""The pyinfra deploy: facts, then the plan from the rules, then condarc, pip and the env.

Only this module reads ``host.data``. A host that the rules refuse, or whose facts cannot be
read, fails alone with its reason; bad settings fail the whole run before any host is touched.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import TypeVar

from pyinfra import host, logger
from pyinfra.api import FactBase, deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory

from labtorch.data.compat import load_compat
from labtorch.data.mirrors import Mirror, MirrorCatalog
from labtorch.deploy import bootstrap as conda_bootstrap
from labtorch.deploy import history as env_history
from labtorch.deploy import lab_cache, locks
from labtorch.deploy.inputs import (
    catalog_for,
    expectation_for,
    fallback_requests,
    host_facts,
    request_for,
    reusable_probe,
)
from labtorch.deploy.run_state import RUN, HostRun
from labtorch.deploy.settings import (
    PREFIX,
    Settings,
    SettingsError,
    check_keys,
    keys_set_by,
    settings_from,
)
from labtorch.facts.host_state import HostState
from labtorch.facts.pyinfra_facts import LabHost
from labtorch.operations import checks, conda, pip, run_lock
from labtorch.operations.util.condarc import condarc_change, mirror_config
from labtorch.operations.util.pipconf import pip_conf_change
from labtorch.rules.envdiff import OK, EnvDiff, env_diff
from labtorch.rules.fallback import PipSource, usable_fallbacks
from labtorch.rules.model import PackagePin, Plan, Request, RequestError
from labtorch.rules.plan import plan_for_host
from labtorch.rules.provenance import origins_for
from labtorch.rules.run_lock import LOCK_SUFFIX, LockOwner, is_stale

T = TypeVar("T")

_checked: set[int] = set()
# This run, as the env locks it takes name it.
OWNER = LockOwner(socket.gethostname(), os.getpid(), int(time.time()))


def _where_group_sets(group: str, key: str) -> str:
    """The group_data file that sets ``key`` for ``group`` (pyinfra lets it override the
    inventory's group data), else the inventory's group. "Sets" is what the file binds, as pyinfra
    reads it: a key named only in a comment or a string is not set there."""
    path = Path("group_data") / f"{group}.py"
    if path.is_file() and key in keys_set_by(path):
        return str(path)
    return f"group {group} of the inventory"


def _check_every_source(inventory: Inventory) -> None:
    check_keys(inventory.get_override_data(), "pyinfra --data")
    for group in ("all", *inventory.groups):
        data = inventory.get_data() if group == "all" else inventory.get_group_data(group)
        for key in (k for k in data if k.startswith(PREFIX)):
            check_keys({key: data[key]}, _where_group_sets(group, key))
    for target in inventory:
        check_keys(target.host_data, f"inventory host {target.name}")


def check_inventory_settings(inventory: Inventory) -> None:
    """Check every ``torch_*`` key of every data source, once per run.

    A bad setting raises PyinfraError while pyinfra prepares, so the run stops before any host
    is touched, with a message that names the file (or host) and the key.
    """
    if id(inventory) in _checked:
        return
    try:
        _check_every_source(inventory)
    except SettingsError as exc:
        raise PyinfraError(f"labtorch settings: {exc}") from None
    _checked.add(id(inventory))


def _plan(
    host_state: HostState, settings: Settings, request: Request, catalog: MirrorCatalog
) -> Plan | str:
    """The plan for this host, or the reason it has none."""
    try:
        plan = plan_for_host(host_facts(host_state, settings), request, load_compat(), catalog)
    except RequestError as exc:
        return str(exc)
    if plan.refused:
        return plan.reasons[-1]
    return plan


def _fallbacks(
    host_state: HostState,
    settings: Settings,
    request: Request,
    catalog: MirrorCatalog,
    plan: Plan,
) -> list[Plan]:
    """The fallback mirrors' plans that pin exactly what ``plan`` pins; the others are named."""
    candidates = {
        name: _plan(host_state, settings, fallback, catalog)
        for name, fallback in fallback_requests(settings, request, catalog).items()
    }
    usable, skipped = usable_fallbacks(plan, candidates)
    for reason in skipped:
        logger.warning(f"[{host.name}] {reason}")
    return usable


def _conda_steps(
    host_state: HostState,
    plan: Plan,
    fallbacks: list[Plan],
    pins: list[PackagePin],
    mirror: Mirror,
    catalog: MirrorCatalog,
    accepted: list[str],
    locked: locks.LockUse | None = None,
    cache: str | None = None,
) -> None:
    conda.condarc(
        name="Point conda at the mirror",
        path=host_state.condarc_path,
        config=mirror_config(plan, mirror, catalog),
        current=host_state.condarc,
        has_backup=host_state.condarc_backup,
        kind=host_state.condarc_kind,
    )
    if locked:
        locks.install(locked, host_state, plan, fallbacks, cache=cache)
        return
    conda.env(
        name="Install torch into the conda env",
        conda=host_state.conda_exe,
        prefix=host_state.env_path,
        pins=pins,
        channels=list(plan.channels),
        python=plan.python,
        cuda=plan.cuda,
        installed=host_state.env_packages,
        fallback_channels=[list(fallback.channel_urls) for fallback in fallbacks],
        accepted=accepted,
        foreign=host_state.env_is_foreign("conda"),
        cache=cache,
        channel_urls=list(plan.channel_urls),
    )


def _refuse(step: str, reason: str) -> None:
    RUN.refuse(host, step, reason)
    checks.refuse(name=step, reason=reason)


def _lock_if_changing(
    host_state: HostState,
    settings: Settings,
    plan: Plan,
    mirror: Mirror,
    catalog: MirrorCatalog,
    diff: EnvDiff,
) -> str | None:
    """Take the env's lock when this run will change anything of it (a run that changes nothing
    costs nothing more); the lock's path, or None."""
    try:
        files_change = pip_conf_change(host_state.pip_conf, mirror.pypi) is not None or (
            settings.installer == "conda"
            and condarc_change(host_state.condarc, mirror_config(plan, mirror, catalog)) is not None
        )
    except ValueError:
        files_change = True
    if diff.action == OK and not files_change:
        return None
    path = host_state.env_path + LOCK_SUFFIX
    held = LockOwner.parse(host_state.run_lock)
    stale = None
    if held is not None and is_stale(held, int(time.time()), OWNER.controller, _alive(held.pid)):
        stale = held.line()
    run_lock.acquire(
        name="Take the env",
        path=path,
        owner=OWNER,
        wait_s=settings.run_lock_wait,
        what=host.name,
        stale=stale,
    )
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _keep_probe(run: HostRun):
    def keep(probe: dict | None, verdict) -> None:
        run.probe, run.verdict = probe, verdict

    return keep


@deploy("labtorch: PyTorch")
def install_pytorch() -> None:
    """Bring this host to the build the rules choose for it, through the mirror, and prove it.

    The lab cache's host is configured first and what the cache fetched is read last: pyinfra
    runs each operation on every host before the next (``labtorch.deploy.lab_cache``)."""
    check_inventory_settings(host.inventory)
    settings = settings_from(host.data.dict())
    cache = lab_cache.serve(host, settings)
    _install_pytorch(settings, cache)
    lab_cache.account(cache, host)


def read_host_state(settings: Settings) -> HostState | None:
    """This host's state as the settings say where to look (the LabHost fact: one command)."""
    return read_where_set(LabHost, settings)


def read_where_set(fact: type[FactBase[T]], settings: Settings) -> T | None:
    """A fact of the LabHost family (LabHost, RollbackState) read where the settings say the
    env, the condarc and the pip.conf labtorch owns are."""
    return host.get_fact(
        fact,
        installer=settings.installer,
        env=settings.env,
        condarc_scope=settings.condarc_scope,
        venv_root=settings.venv_root,
        pip_scope=settings.pip_scope,
    )


def _install_pytorch(settings: Settings, cache: lab_cache.Site | None) -> None:
    run = RUN.host(host)
    host_state = read_host_state(settings)
    if host_state is None:
        _refuse("Read host facts", "the host's facts could not be read")
        return
    run.state = host_state
    request = request_for(settings)
    catalog = catalog_for(settings)
    mirror = catalog[request.mirror]
    plan = _plan(host_state, settings, request, catalog)
    if isinstance(plan, str):
        _refuse("Plan PyTorch", plan)
        return
    run.plan = plan
    logger.info(f"    [{host.name}] labtorch plan: {plan.summary()}")
    bootstrap = None
    if settings.installer == "conda" and host_state.conda_exe is None:
        mirrors = [request.mirror, *settings.fallback_mirrors]
        found = conda_bootstrap.conda_for(host_state, settings, catalog, mirrors)
        if isinstance(found, str):
            _refuse("Find conda", found)
            return
        host_state, bootstrap = found
        run.state = host_state
    pins = [*plan.packages, *plan.toolkit]
    fallbacks = _fallbacks(host_state, settings, request, catalog, plan)
    origins = origins_for(plan, fallbacks, catalog)
    via = lab_cache.through(
        cache,
        host,
        settings,
        host_state,
        request,
        plan,
        fallbacks,
        origins,
        lambda request, catalog: _plan(host_state, settings, request, catalog),
    )
    if via:
        run.plan = plan = via.plan
        fallbacks, origins, mirror, catalog = via.fallbacks, via.origins, via.mirror, via.catalog
    accepted = list(origins.accepted)
    locked = locks.choose(host_state, settings, plan, mirror, fallbacks)
    if isinstance(locked, str):
        _refuse("Use the lock", locked)
        return
    lab_cache.warm_with(cache, host, locked)
    diff = env_diff(
        pins,
        host_state.env_packages,
        accepted,
        foreign=host_state.env_is_foreign(settings.installer),
    )
    if locked:
        diff = locks.diff(locked, host_state, plan, fallbacks)
    # A package from outside the mirror is repaired below; the report says which it was.
    run.notes = [f"{line}: installed again from the mirror" for line in diff.foreign]
    conda_bootstrap.install(bootstrap)
    lock = _lock_if_changing(host_state, settings, plan, mirror, catalog, diff)
    env_history.record_before_change(host_state, settings, diff, plan)
    if settings.installer == "conda":
        _conda_steps(
            host_state,
            plan,
            fallbacks,
            pins,
            mirror,
            catalog,
            accepted,
            locked,
            cache=via.url if via else None,
        )
    elif locked:
        locks.install(locked, host_state, plan, fallbacks, cache=via.url if via else None)
    else:
        pip.venv(
            name="Install torch into the venv",
            python="python3",
            prefix=host_state.env_path,
            pins=pins,
            index_url=plan.index_url,
            wheel_index=list(plan.wheel_index) if plan.wheel_index else None,
            installed=host_state.env_packages,
            fallbacks=[PipSource.of(fallback) for fallback in fallbacks],
            foreign=host_state.env_is_foreign("pip"),
            cache=via.url if via else None,
            accepted=accepted,
        )
    pip.pip_index(
        name="Point pip at the mirror",
        path=host_state.pip_conf_path,
        index_url=mirror.pypi,
        current=host_state.pip_conf,
        has_backup=host_state.pip_conf_backup,
        kind=host_state.pip_conf_kind,
    )
    if lock:
        run_lock.release(name="Let the env go", path=lock, owner=OWNER)
    unchanged = diff.action == OK
    checks.verify(
        name="Prove torch works",
        python=f"{host_state.env_path}/bin/python",
        expected=expectation_for(plan, origins, host_state.nvidia_smi),
        reused=reusable_probe(host_state) if unchanged and settings.probe == "on-change" else None,
        kernel_driver=host_state.kernel_driver,
        on_result=_keep_probe(run),
    )
