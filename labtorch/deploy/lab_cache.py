"""The lab cache in the deploy: which host serves it, its operations before any host installs,
every host's installs through it, and what the report says about it (README "Lab cache").

The cache host is ``torch_cache_host``, or with ``"auto"`` the one host of the inventory's group
``cache``. How it serves (port, address, disk, the mirror it proxies) comes from that host's own
settings; every host whose settings name it installs through it, the cache host included, once
its own settings agree on the mirror (else it installs straight from the mirror, with a warning).

Order: the cache host's operations are called first in the deploy, so pyinfra, which runs each
operation on every host before the next, configures the cache before any host installs; the
read of the cache's upstream log is called last, after every install.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pyinfra import logger
from pyinfra.api import State
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.inventory import Inventory

from labtorch.data.mirrors import Mirror, MirrorCatalog, NotMirrored
from labtorch.deploy.inputs import catalog_for, request_for
from labtorch.deploy.run_state import RUN
from labtorch.deploy.settings import Settings, settings_from
from labtorch.facts.host_state import HostState
from labtorch.facts.pyinfra_facts import CacheHost
from labtorch.operations import cache as cache_ops
from labtorch.operations import checks
from labtorch.operations.cache import DEFAULT_NGINX
from labtorch.rules.cache import (
    CACHE_MIRROR,
    LOG_DIR,
    NGINX_USER,
    STATE_DIR,
    CacheServer,
    Layout,
    bypass_notes,
    cache_layout,
    cache_mirror,
    nginx_config,
    systemd_unit,
    warm_notes,
)
from labtorch.rules.envdiff import OK, env_diff
from labtorch.rules.model import Plan, Request
from labtorch.rules.provenance import Origins, origins_for

GROUP = "cache"


@dataclass
class Site:
    """One cache host of this run, as the hosts that install through it see it."""

    name: str
    server: CacheServer
    url: str
    layout: Layout
    offset: int | None = None
    installs: set[str] = field(default_factory=set)
    warm: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Via:
    """A host's install through the cache: the plan on the cache, the mirror itself and then its
    fallbacks as fallbacks, what counts as from the mirror, and the cache as the mirror."""

    url: str
    plan: Plan
    fallbacks: list[Plan]
    origins: Origins
    mirror: Mirror
    catalog: MirrorCatalog


_SITES: dict[tuple[int, str], Site] = {}


def _cache_host(inventory: Inventory, settings: Settings) -> str | None:
    """The inventory name of the cache host these settings name, or None (no cache)."""
    choice = settings.cache_host
    if choice == "off":
        return None
    if choice == "auto":
        group = inventory.get_group(GROUP, [])
        if len(group) > 1:
            names = ", ".join(member.name for member in group)
            raise PyinfraError(
                f"labtorch settings: the inventory's group {GROUP} has {len(group)} hosts "
                f"({names}): the lab cache is one host; name it with torch_cache_host"
            )
        return group[0].name if group else None
    if inventory.get_host(choice, None) is None:
        raise PyinfraError(
            f"labtorch settings: torch_cache_host: {choice!r} is not a host of the inventory"
        )
    return choice


def layout_for(settings: Settings) -> Layout:
    """What a cache serves for these settings: their mirror, wheel pages and fallbacks."""
    request = request_for(settings)
    catalog = catalog_for(settings)
    try:
        wheels = catalog[request.wheel_mirror]
    except KeyError:
        wheels = None
    fallbacks = [catalog[name] for name in settings.fallback_mirrors]
    return cache_layout(catalog[request.mirror], wheels, fallbacks, catalog)


def _url(server_host: Host, settings: Settings) -> str:
    if settings.cache_url:
        return settings.cache_url.rstrip("/")
    address = str(server_host.data.get("ssh_hostname") or server_host.name)
    try:
        if ipaddress.ip_address(address).version == 6:
            address = f"[{address}]"
    except ValueError:
        pass
    return f"http://{address}:{settings.cache_port}"


def site_for(inventory: Inventory, settings: Settings) -> Site | None:
    """The cache these settings install through (the same object for every host of a run)."""
    name = _cache_host(inventory, settings)
    if name is None:
        return None
    key = (id(inventory), name)
    if key not in _SITES:
        server_host = inventory.get_host(name)
        theirs = settings_from(server_host.data.dict())
        server = CacheServer(
            port=theirs.cache_port,
            bind=theirs.cache_bind,
            max_size=theirs.cache_max_size,
            directory=theirs.cache_dir,
            index_ttl=theirs.cache_index_ttl,
        )
        _SITES[key] = Site(name, server, _url(server_host, theirs), layout_for(theirs))
        if notes_for not in RUN.note_sources:
            RUN.note_sources.append(notes_for)
    return _SITES[key]


def serve(host: Host, settings: Settings) -> Site | None:
    """This host's cache; on the cache host, the operations that make it serve: nginx from the
    distribution, its directories, labtorch's configuration (checked by nginx before it is put
    in place) and unit, the service running on them."""
    site = site_for(host.inventory, settings)
    if site is None or host.name != site.name:
        return site
    directories = [
        (STATE_DIR, "root", "755"),
        (f"{STATE_DIR}/tmp", "root", "755"),
        (LOG_DIR, "root", "755"),
        (site.server.directory, NGINX_USER, "700"),
    ]
    found = host.get_fact(CacheHost, directories=[path for path, _, _ in directories])
    if found is None:
        checks.refuse(name="Read the lab cache host", reason="the cache host could not be read")
        return site
    site.offset = found.upstream_log_size
    cache_ops.nginx(
        name="Install nginx for the lab cache", present=found.nginx, apt_get=found.apt_get
    )
    cache_ops.directories(
        name="Make the lab cache's directories", wanted=directories, current=found.directories
    )
    config = nginx_config(site.server, site.layout)
    unit = systemd_unit(found.nginx or DEFAULT_NGINX)
    cache_ops.config(
        name="Write the lab cache's nginx configuration",
        text=config,
        current_sha256=found.config_sha256,
        nginx=found.nginx,
    )
    cache_ops.unit(
        name="Write the lab cache's service", text=unit, current_sha256=found.unit_sha256
    )
    cache_ops.service(
        name="Run the lab cache",
        active=found.active,
        enabled=found.enabled,
        reload=found.config_sha256 != cache_ops.sha256(config),
        restart=found.unit_sha256 not in (None, cache_ops.sha256(unit)),
        systemctl=found.systemctl,
    )
    cache_ops.warm(
        name="Warm the lab cache with the locked files",
        urls=lambda: sorted(site.warm),
        url=site.url,
        local=site.server.local_url,
    )
    return site


def warm_with(site: Site | None, host: Host, locked: object) -> None:
    """The files of the lock ``host`` installs from (a ``locks.LockUse``), to fetch once
    through the cache before the hosts install, when the host installs something."""
    if site is None or not locked or host.name not in site.installs:
        return
    prefix = site.url.rstrip("/") + "/"
    site.warm.update(p.url for p in locked.packages if p.url.startswith(prefix))


def through(
    site: Site | None,
    host: Host,
    settings: Settings,
    host_state: HostState,
    request: Request,
    plan: Plan,
    fallbacks: list[Plan],
    origins: Origins,
    plan_for: Callable[[Request, MirrorCatalog], Plan | str],
) -> Via | None:
    """The install through the cache, or None (no cache, or one that serves another mirror, or
    a plan on the cache that would pin anything else: then a warning says so)."""
    if site is None:
        return None
    if layout_for(settings) != site.layout:
        logger.warning(
            f"[{host.name}] the lab cache at {site.url} proxies another mirror than this host's "
            "settings name: installing straight from the mirror"
        )
        return None
    catalog = catalog_for(settings)
    cache = cache_mirror(site.url, site.layout)
    catalog = catalog.with_mirror(cache)
    wheel_mirror = CACHE_MIRROR if site.layout.wheels else request.wheel_mirror
    try:
        cached = plan_for(replace(request, mirror=CACHE_MIRROR, wheel_mirror=wheel_mirror), catalog)
    except NotMirrored as exc:
        cached = str(exc)
    pins = [(pin.name, pin.version, pin.build) for pin in (*plan.packages, *plan.toolkit)]
    if isinstance(cached, str) or pins != [
        (pin.name, pin.version, pin.build) for pin in (*cached.packages, *cached.toolkit)
    ]:
        why = cached if isinstance(cached, str) else "it would pin other packages"
        logger.warning(f"[{host.name}] not through the lab cache at {site.url}: {why}")
        return None
    mirror = tuple(
        url
        for url in dict.fromkeys((*origins_for(cached, [], catalog).mirror, *origins.mirror))
        if url not in origins.fallback
    )
    accepted = [*mirror, *origins.fallback]
    diff = env_diff(
        [*cached.packages, *cached.toolkit],
        host_state.env_packages,
        accepted,
        foreign=host_state.env_is_foreign(settings.installer),
    )
    if diff.action != OK:
        site.installs.add(host.name)
    return Via(
        url=site.url,
        plan=cached,
        fallbacks=[plan, *fallbacks],
        origins=Origins(mirror, origins.fallback),
        mirror=cache,
        catalog=catalog,
    )


def account(site: Site | None, host: Host) -> None:
    """On the cache host, once every host installed: what the cache fetched upstream in this
    run, and which files a fallback mirror served, for the report."""
    if site is None or host.name != site.name or site.offset is None:
        return
    cache_ops.upstream_log(
        name="Read what the lab cache fetched",
        offset=site.offset,
        layout=site.layout,
        installed=lambda: bool(site.installs),
        on_notes=site.notes.extend,
    )


def notes_for(state: State, host: Host) -> list[str]:
    """The report's notes on the cache for one host: on the cache host, what it fetched; on a
    host whose install went around it, why (the install printed it)."""
    notes = [note for site in _SITES.values() if site.name == host.name for note in site.notes]
    for op_hash in state.get_op_order():
        op_data = state.ops[host].get(op_hash)
        meta = op_data.operation_meta if op_data else None
        if meta is None or not meta.is_complete():
            continue
        try:
            lines = meta.stdout_lines
        except AssertionError:
            continue
        notes += warm_notes(lines)
        notes += [
            f"installed without the lab cache: {note}; from the mirror or its fallbacks"
            for note in bypass_notes(lines)
        ]
    return notes
