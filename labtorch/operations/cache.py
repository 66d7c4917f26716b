"""The lab cache's operations: nginx from the distribution, labtorch's configuration and service
on the cache host; on every host, an install that goes through the cache while it answers.

Each operation decides from the ``CacheHost`` fact (``labtorch.facts.pyinfra_facts``) read
before it, or from its arguments, and does nothing when the host already is as it should be: a
rerun with nothing changed runs no command on the cache host but that fact (and, when hosts
installed something, the read of the cache's upstream log at the end).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from pyinfra import host, state
from pyinfra.api import QuoteString, StringCommand, operation

from labtorch.facts.pyinfra_facts import CacheUpstreamLog
from labtorch.operations.checks import failing_command
from labtorch.operations.util.files import replace_file
from labtorch.rules.cache import (
    CONFIG_PATH,
    SERVICE,
    UNIT_PATH,
    Layout,
    after_failed_install,
    reach_check,
    upstream_notes,
    warm_command,
)

NGINX_PACKAGE = "nginx"
DEFAULT_NGINX = "/usr/sbin/nginx"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@operation()
def nginx(present: str | None, apt_get: bool):
    """
    Install nginx from the host's distribution packages, unless it is there.

    labtorch runs nginx as its own service, on its own configuration; so when it installs nginx
    itself, it stops and disables the distribution's ``nginx`` service, which Debian starts on
    port 80 with a default site (an nginx that was there before is left as it was).

    + present: the nginx executable the CacheHost fact found (None: none)
    + apt_get: whether the host has apt-get
    """
    if present:
        host.noop(f"nginx is installed ({present})")
        return
    if not apt_get:
        yield failing_command(
            "the lab cache needs nginx and this host has no apt-get: install nginx from the "
            "distribution's packages, then run again"
        )
        return
    install = (
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        f"{NGINX_PACKAGE}"
    )
    yield f"{install} || {{ apt-get update -q && {install}; }}"
    yield "systemctl disable --now nginx.service >/dev/null 2>&1 || true"


@operation()
def directories(wanted: list[tuple[str, str, str]], current: dict[str, tuple[str, str]]):
    """
    The cache's directories, with their owner and mode.

    + wanted: ``(path, owner, mode)`` of each directory (mode in octal, as ``stat -c %a``)
    + current: ``{path: (owner, mode)}`` of those that exist, from the CacheHost fact
    """
    missing = [(p, o, m) for p, o, m in wanted if tuple(current.get(p) or ()) != (o, m)]
    if not missing:
        host.noop("the cache's directories are there")
        return
    for path, owner, mode in missing:
        yield StringCommand(
            "install", "-d", "-o", owner, "-g", owner, "-m", mode, QuoteString(path)
        )


@operation()
def config(text: str, current_sha256: str | None, nginx: str | None):
    """
    Write labtorch's nginx configuration atomically, checked by ``nginx -t`` before it
    replaces the one in place: a configuration nginx refuses never reaches the service.

    + text: the configuration (``labtorch.rules.cache.nginx_config``)
    + current_sha256: the sha256 of the file in place (None: none)
    + nginx: the nginx executable (None: the one apt installs)
    """
    if current_sha256 == sha256(text):
        host.noop(f"{CONFIG_PATH} is up to date")
        return

    def check(temporary: str) -> StringCommand:
        return StringCommand(
            QuoteString(nginx or DEFAULT_NGINX), "-t", "-q", "-c", QuoteString(temporary)
        )

    yield from replace_file(CONFIG_PATH, text, existed=False, has_backup=True, check=check)


@operation()
def unit(text: str, current_sha256: str | None):
    """
    Write the cache's systemd unit atomically, and have systemd read it again.

    + text: the unit (``labtorch.rules.cache.systemd_unit``)
    + current_sha256: the sha256 of the file in place (None: none)
    """
    if current_sha256 == sha256(text):
        host.noop(f"{UNIT_PATH} is up to date")
        return
    yield from replace_file(UNIT_PATH, text, existed=False, has_backup=True)
    yield "systemctl daemon-reload"


@operation()
def service(active: bool, enabled: bool, reload: bool, restart: bool, systemctl: bool):
    """
    The cache's service running, enabled at boot, and on the configuration in place.

    + active, enabled: the service's state from the CacheHost fact
    + reload: the configuration changed in this run (nginx re-reads it, without a restart)
    + restart: the unit changed in this run
    + systemctl: whether the host has systemctl
    """
    if not systemctl:
        yield failing_command(
            "the lab cache runs as a systemd service and this host has no systemctl"
        )
        return
    if not active:
        yield StringCommand("systemctl", "enable", "--now", SERVICE)
        return
    if restart:
        yield StringCommand("systemctl", "restart", SERVICE)
    elif reload:
        yield StringCommand("systemctl", "reload", SERVICE)
    if not enabled:
        yield StringCommand("systemctl", "enable", SERVICE)
    if not (restart or reload or not enabled):
        host.noop(f"{SERVICE} is running with this configuration")


@operation()
def upstream_log(
    offset: int,
    layout: Layout,
    installed: Callable[[], bool],
    on_notes: Callable[[list[str]], None],
):
    """
    Read what the cache fetched upstream in this run, once every host installed: how much,
    and which files a fallback mirror served because the mirror failed. Nothing is read when
    no host installed anything.

    + offset: the upstream log's size before the run
    + layout: what the cache serves (to name the mirror each file came from)
    + installed: whether any host installs something in this run
    + on_notes: called with the report's notes
    """
    if not state.is_executing or not installed():
        host.noop("no host installed anything through the cache")
    else:
        notes = upstream_notes(host.get_fact(CacheUpstreamLog, offset=offset), layout)
        on_notes(notes)
        host.noop("; ".join(notes) or "the cache fetched nothing upstream")
    yield from ()


@operation()
def warm(urls: Callable[[], list[str]], url: str, local: str):
    """
    Fetch the files of the locks the hosts install from once through the cache, in parallel,
    before they install: their downloads are then all LAN hits. Nothing when no host installs
    from a lock.

    + urls: the locked files' URLs on the cache (asked at execute time, once every host said)
    + url: how the hosts reach the cache
    + local: how the cache host itself reaches it
    """
    wanted = urls()
    if not wanted:
        host.noop("no host installs a locked file through the cache")
        return
    yield warm_command(wanted, url, local)


def through_cache(attempt: StringCommand, url: str) -> StringCommand:
    """``attempt`` when the cache at ``url`` answers, printing why when it does not or when
    the install through it fails, so that the next attempt (the mirror itself) follows."""
    return StringCommand(
        reach_check(url), "&&", "{", attempt, "||", after_failed_install(url), ";", "}"
    )
