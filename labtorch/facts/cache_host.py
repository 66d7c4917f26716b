"""The cache host's state in one command, and the cache's upstream log; their parsers (pure).

What the deploy decides the lab cache's operations from: is nginx there (else, can apt install
it), are labtorch's nginx configuration and service unit what they should be (by sha256, so a
byte of difference counts), do the cache's directories exist with their owner and mode, is the
service running and enabled, and how long the upstream log is before the run (what the run adds
after it is read back at the end, to say which files the fallback mirrors served).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from labtorch.facts.host_state import script_sections
from labtorch.rules.cache import CONFIG_PATH, NGINX_USER, SERVICE, UNIT_PATH, UPSTREAM_LOG

MARK = "@@labtorch-cache"


@dataclass(frozen=True)
class CacheHostState:
    """The cache host as the deploy finds it."""

    nginx: str | None
    apt_get: bool
    systemctl: bool
    nginx_user: bool
    config_sha256: str | None
    unit_sha256: str | None
    directories: dict[str, tuple[str, str]]
    active: bool
    enabled: bool
    upstream_log_size: int


def cache_host_script(directories: list[str]) -> str:
    """The POSIX sh script that prints every section; it exits 0 whatever it finds."""
    dirs = " ".join(shlex.quote(path) for path in directories)
    service = shlex.quote(SERVICE)
    return "\n".join(
        [
            f"echo {MARK} nginx; command -v nginx 2>/dev/null ||"
            " { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }",
            f"echo {MARK} apt-get; command -v apt-get 2>/dev/null",
            f"echo {MARK} systemctl; command -v systemctl 2>/dev/null",
            f"echo {MARK} nginx-user; id -u {NGINX_USER} 2>/dev/null",
            f"echo {MARK} config; [ -f {CONFIG_PATH} ] && sha256sum < {CONFIG_PATH}",
            f"echo {MARK} unit; [ -f {UNIT_PATH} ] && sha256sum < {UNIT_PATH}",
            f"echo {MARK} directories; for d in {dirs}; do"
            ' [ -d "$d" ] && stat -c "%U %a %n" "$d"; done',
            f"echo {MARK} active; systemctl is-active {service} 2>/dev/null",
            f"echo {MARK} enabled; systemctl is-enabled {service} 2>/dev/null",
            f"echo {MARK} upstream-log; stat -c %s {UPSTREAM_LOG} 2>/dev/null",
            "exit 0",
        ]
    )


def _first(sections: dict[str, list[str]], name: str) -> str | None:
    lines = sections.get(name) or []
    return lines[0] if lines else None


def _sha(line: str | None) -> str | None:
    """sha256sum's digest (it prints ``<hex>  -``)."""
    return line.split()[0] if line else None


def parse_cache_host(lines: list[str]) -> CacheHostState:
    sections = {
        name: [line.strip() for line in body if line.strip()]
        for name, body in script_sections(lines, MARK).items()
    }
    if "nginx" not in sections:
        raise ValueError("not labtorch cache host output (no nginx section)")
    directories = {}
    for line in sections.get("directories", []):
        owner, mode, path = line.split(" ", 2)
        directories[path] = (owner, mode)
    size = _first(sections, "upstream-log")
    return CacheHostState(
        nginx=_first(sections, "nginx"),
        apt_get=bool(_first(sections, "apt-get")),
        systemctl=bool(_first(sections, "systemctl")),
        nginx_user=bool(_first(sections, "nginx-user")),
        config_sha256=_sha(_first(sections, "config")),
        unit_sha256=_sha(_first(sections, "unit")),
        directories=directories,
        active=_first(sections, "active") == "active",
        enabled=_first(sections, "enabled") == "enabled",
        upstream_log_size=int(size) if size and size.isdigit() else 0,
    )


# --- the upstream log ------------------------------------------------------------------------


def upstream_log_script(offset: int) -> str:
    """The upstream log from byte ``offset`` on (what this run added)."""
    return f"tail -c +{offset + 1} {UPSTREAM_LOG} 2>/dev/null; exit 0"


def parse_upstream_log(lines: list[str]) -> list[dict]:
    """One entry per request the cache sent upstream: ``rank`` (0 the mirror, then each
    fallback), ``uri``, ``status``; a line that is not JSON (cut by a rotation) is skipped."""
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("rank"), int):
            entries.append(entry)
    return entries
