"""The lab cache: one host runs nginx as a caching proxy of the mirror, every host installs
through it, and each file crosses the campus link once (pure).

What the cache serves keeps the mirror's URL layout (TUNA's): the conda channels under
``/anaconda/pkgs/<repo>/`` and ``/anaconda/cloud/<channel>/``, PyPI under ``/pypi/web/``
(``simple/`` pages and the ``packages/`` they link relatively), and the PyTorch wheel pages under
their own path (``/pytorch-wheels/`` for Aliyun's). Each part is a :class:`Route`: its path on the
cache and, in order, where it is on the mirror and on each fallback mirror that has it. Anything
else is refused (403), as is any method but GET and HEAD; ``/labtorch-cache/status`` is nginx's
``stub_status`` page, which the hosts ask before installing through the cache.

The nginx configuration, and the nginx documentation each directive relies on (nginx 1.22,
Debian 12's; every directive has its anchor on its module's page,
https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_cache_lock and so on: proxy
module for ``proxy_*``, https://nginx.org/en/docs/http/ngx_http_upstream_module.html#server for
``backup``, https://nginx.org/en/docs/http/ngx_http_core_module.html for ``limit_except`` and
``listen``, https://nginx.org/en/docs/http/ngx_http_slice_module.html,
https://nginx.org/en/docs/http/ngx_http_gunzip_module.html,
https://nginx.org/en/docs/http/ngx_http_stub_status_module.html,
https://nginx.org/en/docs/http/ngx_http_autoindex_module.html, and ``nginx -t``, ``-c``, ``-e``,
``-s reload`` in https://nginx.org/en/docs/switches.html):

- ``proxy_cache_path ... max_size=`` is the disk budget; ``inactive=`` how long an entry nobody
  asks for stays (default 10 minutes, far too short here); ``use_temp_path=off`` writes a
  response straight into the cache directory (proxy module, proxy_cache_path).
- Package files (``.conda``, ``.tar.bz2``, ``.whl``) never change under their name: cached for
  a year (``proxy_cache_valid 200 206``). Index files (repodata, PyPI's simple pages, wheel
  pages) for ``torch_cache_index_ttl``, revalidated with a conditional request once expired
  (``proxy_cache_revalidate``), and served stale while the upstreams fail or while one request
  refreshes them (``proxy_cache_use_stale error timeout updating http_403 http_500 http_502
  http_503 http_504``, ``proxy_cache_background_update``).
- ``proxy_cache_lock on``: of concurrent requests for an element not yet cached, one goes
  upstream and the others wait for it (proxy_cache_lock); ``proxy_cache_lock_timeout`` and
  ``proxy_cache_lock_age`` (5 s by default, after which a waiting request goes upstream too,
  uncached) are raised so that a slow mirror does not multiply the fetches.
- Package files are fetched in slices (``slice``, ngx_http_slice_module: "more effective caching
  of big responses"; the cache key includes ``$slice_range`` and ``Range: $slice_range`` is sent
  upstream, as the module's example does): each slice is one cache element with its own lock,
  so 30 hosts asking at once for a 3 GB wheel wait for one slice at a time, not for the whole
  file (pip's default read timeout is 15 s, conda's 60 s), and the mirror still sends each byte
  once. The mirrors' ``ETag`` is hidden (``proxy_hide_header``): a file whose slices came from
  two mirrors (the fallback took over halfway) is the same bytes, but the slice module refuses
  slices whose ETags differ.
- Fallback mirrors are ``backup`` servers of an ``upstream`` block, tried in order when the
  mirror fails (``proxy_next_upstream error timeout http_403 http_500 http_502 http_503
  http_504``; upstream module, server ... backup). TUNA and BFSU are different sites, and an
  upstream block sends one ``Host`` (``$proxy_host``, the block's name) to all its servers, so
  each server of the block is a small nginx server of our own on a unix socket (``listen
  unix:``) whose locations ``proxy_pass`` to the real mirror with its own host name, TLS name
  (``proxy_ssl_server_name on``) and path. Nothing but nginx listens on the network.
- Caching is decided here, not by the mirror's headers: ``proxy_ignore_headers Cache-Control
  Expires Set-Cookie Vary X-Accel-Expires`` (those headers otherwise take precedence over
  proxy_cache_valid, and a ``Vary`` makes one element per client header). The upstream is asked
  for gzip whatever the client accepts (``proxy_set_header Accept-Encoding gzip``), so that one
  element serves every client, and ``gunzip on`` decompresses it for a client that does not
  accept gzip.
- ``limit_except GET { deny all; }`` in every location (core module: allowing GET allows HEAD;
  it acts in the access phase, so no location of the cache answers with ``return``, which runs
  earlier); ``deny all`` outside the layout and for the mirror's directory listings (the
  mirror's own, which ``autoindex off`` does not stop, as nginx does not make them);
  ``autoindex off``; ``listen`` only on the configured address and port; ``server_tokens off``.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from labtorch.data.mirrors import Mirror, MirrorCatalog, WheelIndex

CACHE_MIRROR = "lab-cache"
SERVICE = "labtorch-cache"
CONFIG_PATH = "/etc/labtorch/cache/nginx.conf"
UNIT_PATH = f"/etc/systemd/system/{SERVICE}.service"
STATE_DIR = "/var/lib/labtorch-cache"
LOG_DIR = "/var/log/labtorch-cache"
PID_PATH = f"{STATE_DIR}/nginx.pid"
ACCESS_LOG = f"{LOG_DIR}/access.log"
UPSTREAM_LOG = f"{LOG_DIR}/upstream.log"
ERROR_LOG = f"{LOG_DIR}/error.log"
NGINX_USER = "www-data"
CA_CERTIFICATES = "/etc/ssl/certs/ca-certificates.crt"
HEALTH_PATH = "/labtorch-cache/status"
PACKAGE_SUFFIXES = (".conda", ".tar.bz2", ".whl")
# The channels a TUNA-layout mirror serves under anaconda/cloud that a plan may use.
CLOUD_CHANNELS = ("conda-forge", "pytorch", "pytorch-lts", "nvidia")
PACKAGE_VALIDITY = "365d"
PACKAGE_404_VALIDITY = "1m"
INACTIVE = "90d"
SLICE = "4m"
LOCK_TIMEOUT = "10m"
KEYS_ZONE = "labtorch:64m"
BYPASS_MARK = "labtorch-cache: "
WARM_MARK = "labtorch-cache-warm: "
WARM_AGENT = "labtorch-cache-warm"
WARM_PARALLEL = 8


@dataclass(frozen=True)
class CacheServer:
    """How the cache host serves: where it listens, its disk and budget, how long an index
    stays fresh (nginx's size and time syntax: ``50g``, ``10m``)."""

    port: int = 3143
    bind: str = "0.0.0.0"
    max_size: str = "50g"
    directory: str = "/var/cache/labtorch-cache"
    index_ttl: str = "10m"

    @property
    def local_url(self) -> str:
        """Where the cache host itself reaches the cache."""
        address = ipaddress.ip_address(self.bind)
        if address.is_unspecified:
            address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"http://{host}:{self.port}"

    @property
    def listen(self) -> str:
        """nginx's ``listen`` address: ``addr:port``, an IPv6 address in brackets."""
        address = ipaddress.ip_address(self.bind)
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Route:
    """One part of the mirror's layout: its path on the cache, and where the same part is on the
    mirror and then on each fallback mirror that has it (base URLs ending in ``/``), with the
    name of the mirror each one is on (a catalog name, or a fallback's URL)."""

    prefix: str
    upstreams: tuple[str, ...]
    sources: tuple[str, ...] = ()

    def source(self, rank: int) -> str:
        return self.sources[rank] if rank < len(self.sources) else self.upstreams[rank]


@dataclass(frozen=True)
class Layout:
    """What the cache serves: its routes, and what a client finds where on it."""

    routes: tuple[Route, ...]
    default_channels: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    pypi: bool = False
    wheels: WheelIndex | None = None

    @property
    def ranks(self) -> int:
        """How many upstreams the longest route has: the mirror, then each fallback."""
        return max((len(route.upstreams) for route in self.routes), default=0)

    def route_of(self, path: str) -> Route | None:
        """The route that serves ``path`` (the longest prefix, as nginx chooses)."""
        matching = [route for route in self.routes if path.startswith(route.prefix)]
        return max(matching, key=lambda route: len(route.prefix), default=None)


def _slash(url: str) -> str:
    return url.rstrip("/") + "/"


def _parent(url: str) -> tuple[str, str]:
    """``https://m/anaconda/pkgs/main`` -> (``https://m/anaconda/pkgs/``, ``main``)."""
    base, _, name = url.rstrip("/").rpartition("/")
    return base + "/", name


def _pypi_root(url: str) -> str:
    """A PyPI simple index's root: its pages link the files under ``<root>/packages/``."""
    stripped = url.rstrip("/")
    return _slash(stripped[: -len("/simple")] if stripped.endswith("/simple") else stripped)


def _defaults(mirror: Mirror) -> dict[str, str]:
    """The mirror's ``defaults`` channels by name (main, r, msys2): their URLs."""
    return {_parent(url)[1]: _slash(url) for url in mirror.default_channels}


def _wheel_base(wheels: WheelIndex) -> tuple[str, str]:
    """A wheel page template split at ``{variant}``: the base URL and what follows."""
    at = wheels.url_template.index("{variant}")
    return wheels.url_template[:at], wheels.url_template[at:]


def _route(prefix: str, found: Sequence[tuple[str, str]]) -> Route:
    """A route from ``(url, mirror name)`` pairs in order; a URL already there is skipped."""
    upstreams: dict[str, str] = {}
    for url, name in found:
        upstreams.setdefault(url, name)
    return Route(prefix, tuple(upstreams), tuple(upstreams.values()))


def _conda_routes(
    primary: Mirror, fallbacks: Sequence[Mirror], catalog: MirrorCatalog
) -> tuple[list[Route], list[str], list[str]]:
    routes, defaults, channels = [], [], []
    for name, url in _defaults(primary).items():
        found = [(url, primary.name)]
        found += [(_defaults(m)[name], m.name) for m in fallbacks if name in _defaults(m)]
        routes.append(_route(f"/anaconda/pkgs/{name}/", found))
        defaults.append(name)
    if primary.custom_channels is None and not primary.default_channels:
        return routes, defaults, channels
    for channel in dict.fromkeys((*primary.channels, *CLOUD_CHANNELS)):
        carrier = catalog.mirror_for_channel(channel, primary.name)
        if carrier is None:
            continue
        found = [(_slash(carrier.channel_url(channel)), carrier.name)]
        found += [(_slash(m.channel_url(channel)), m.name) for m in fallbacks if m.carries(channel)]
        routes.append(_route(f"/anaconda/cloud/{channel}/", found))
        channels.append(channel)
    return routes, defaults, channels


def _wheel_route(
    wheel_mirror: Mirror | None, fallbacks: Sequence[Mirror], taken: list[str]
) -> tuple[Route, WheelIndex] | None:
    """The wheel pages' route, unless its path is the root or overlaps another route's."""
    if wheel_mirror is None or wheel_mirror.pytorch_wheels is None:
        return None
    wheels = wheel_mirror.pytorch_wheels
    base, suffix = _wheel_base(wheels)
    prefix = urlsplit(base).path
    if not prefix.endswith("/") or prefix == "/":
        return None
    if any(prefix.startswith(other) or other.startswith(prefix) for other in taken):
        return None
    found = [(base, wheel_mirror.name)]
    for mirror in fallbacks:
        theirs = mirror.pytorch_wheels
        if theirs and theirs.layout == wheels.layout and _wheel_base(theirs)[1] == suffix:
            found.append((_wheel_base(theirs)[0], mirror.name))
    return _route(prefix, found), WheelIndex(prefix + suffix, wheels.layout)


def cache_layout(
    primary: Mirror,
    wheel_mirror: Mirror | None,
    fallbacks: Sequence[Mirror],
    catalog: MirrorCatalog,
) -> Layout:
    """What the cache serves for a site whose mirror is ``primary`` (its conda channels and
    PyPI), whose wheel pages come from ``wheel_mirror``, with ``fallbacks`` in order; a channel
    the mirror does not carry (``nvidia`` on TUNA) comes from the catalog's carrier of it."""
    routes, defaults, channels = _conda_routes(primary, fallbacks, catalog)
    if primary.pypi:
        found = [(_pypi_root(primary.pypi), primary.name)]
        found += [(_pypi_root(m.pypi), m.name) for m in fallbacks if m.pypi]
        routes.append(_route("/pypi/web/", found))
    wheel = _wheel_route(wheel_mirror, fallbacks, [route.prefix for route in routes])
    if wheel is not None:
        routes.append(wheel[0])
    return Layout(
        routes=tuple(routes),
        default_channels=tuple(defaults),
        channels=tuple(channels),
        pypi=bool(primary.pypi),
        wheels=wheel[1] if wheel else None,
    )


def cache_mirror(url: str, layout: Layout) -> Mirror:
    """The cache as a mirror of the catalog: what a host's condarc, pip config and install
    commands point at (``url``: how the hosts reach the cache)."""
    base = url.rstrip("/")
    wheels = layout.wheels
    return Mirror(
        name=CACHE_MIRROR,
        title=f"the lab cache at {base}",
        default_channels=tuple(f"{base}/anaconda/pkgs/{name}" for name in layout.default_channels),
        custom_channels=f"{base}/anaconda/cloud" if layout.channels else None,
        channels=layout.channels,
        pypi=f"{base}/pypi/web/simple" if layout.pypi else None,
        pytorch_wheels=WheelIndex(base + wheels.url_template, wheels.layout) if wheels else None,
        confirmed=True,
    )


# --- the settings' values --------------------------------------------------------------------

_HOST = re.compile(r"^[A-Za-z0-9_.@:-]+$")
_SIZE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")
_TIME = re.compile(r"^[1-9][0-9]*[smhd]$")
_DIRECTORY = re.compile(r"^(/[A-Za-z0-9_.+-]+)+$")


def _cache_host(value: Any) -> str | None:
    if isinstance(value, str) and _HOST.match(value):
        return None
    return 'must be "auto" (the host of the inventory\'s group cache, if any), "off" or a host name'


def _port(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return None
    return "must be a TCP port, a whole number from 1 to 65535"


def _bind(value: Any) -> str | None:
    try:
        ipaddress.ip_address(value)
    except (TypeError, ValueError):
        return 'must be an IP address to listen on, such as "10.0.0.5" (or "0.0.0.0": every one)'
    return None


def _cache_url(value: Any) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path.strip("/")
        or parts.query
        or parts.fragment
    ):
        return "must be the cache's base URL, such as http://10.0.0.5:3143 (no path)"
    return None


def _size(value: Any) -> str | None:
    if isinstance(value, str) and _SIZE.match(value):
        return None
    return 'must be a size in nginx\'s syntax, such as "50g" or "500m" (k, m, g)'


def _time(value: Any) -> str | None:
    if isinstance(value, str) and _TIME.match(value):
        return None
    return 'must be a time in nginx\'s syntax, such as "10m" (s, m, h, d)'


def _directory(value: Any) -> str | None:
    if isinstance(value, str) and _DIRECTORY.match(value) and ".." not in value.split("/"):
        return None
    return "must be an absolute directory such as /var/cache/labtorch-cache, without .. or spaces"


# The cache's settings (``torch_cache_<key>``) and how each is checked; the port is a number.
SETTING_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "cache_host": _cache_host,
    "cache_port": _port,
    "cache_bind": _bind,
    "cache_url": _cache_url,
    "cache_max_size": _size,
    "cache_dir": _directory,
    "cache_index_ttl": _time,
}
NUMBER_SETTINGS = ("cache_port",)


# --- the nginx configuration -----------------------------------------------------------------


def _socket(rank: int) -> str:
    return f"{STATE_DIR}/upstream-{rank}.sock"


_CACHE_LOG = (
    '\'{"time":"$time_iso8601","client":"$remote_addr","method":"$request_method",'
    '"uri":"$request_uri","status":$status,"bytes":$body_bytes_sent,'
    '"cache":"$upstream_cache_status","upstream_status":"$upstream_status",'
    '"agent":"$http_user_agent"}\''
)
_UPSTREAM_LOG = (
    '\'{"time":"$time_iso8601","rank":$labtorch_rank,"uri":"$request_uri",'
    '"range":"$http_range","status":$status,"bytes":$body_bytes_sent,'
    '"upstream":"$upstream_addr","upstream_status":"$upstream_status"}\''
)


def _upstream_server(rank: int, routes: Sequence[Route]) -> list[str]:
    """The server that fetches from the ``rank``-th upstream of each route (0: the mirror)."""
    lines = [
        "    server {",
        f"        listen unix:{_socket(rank)};",
        f"        set $labtorch_rank {rank};",
        f"        access_log {UPSTREAM_LOG} labtorch_upstream;",
        "        proxy_connect_timeout 10s;",
    ]
    for route in routes:
        if rank >= len(route.upstreams):
            continue
        upstream = route.upstreams[rank]
        lines += [f"        location {route.prefix} {{", f"            proxy_pass {upstream};"]
        if upstream.startswith("https://"):
            lines += [
                "            proxy_ssl_server_name on;",
                "            proxy_ssl_verify on;",
                f"            proxy_ssl_trusted_certificate {CA_CERTIFICATES};",
            ]
        lines.append("        }")
    lines += ["        location / {", "            return 404;", "        }", "    }"]
    return lines


def _upstream_block(index: int, route: Route) -> list[str]:
    servers = [
        f"        server unix:{_socket(rank)}{' backup' if rank else ''};"
        for rank in range(len(route.upstreams))
    ]
    return [f"    upstream labtorch_route_{index} {{", *servers, "    }"]


def _package_pattern() -> str:
    return r"\.(" + "|".join(s.lstrip(".").replace(".", r"\.") for s in PACKAGE_SUFFIXES) + ")$"


def _listings(route: Route) -> str:
    """A nested location that refuses the route's directory listings: conda never asks for a
    directory; of PyPI, only the simple pages end in ``/``; of the wheel pages, all but the
    route's own root (a listing of the variants)."""
    if route.prefix.startswith("/anaconda/"):
        return "location ~ /$"
    if route.prefix == "/pypi/web/":
        return "location ~ ^/pypi/web/((?!simple/).*/)?$"
    return f"location = {route.prefix}"


def _location(index: int, route: Route, server: CacheServer) -> list[str]:
    upstream = f"http://labtorch_route_{index}"
    return [
        f"        location {route.prefix} {{",
        "            limit_except GET { deny all; }",
        f"            proxy_pass {upstream};",
        "            proxy_cache_key $uri;",
        f"            proxy_cache_valid 200 404 {server.index_ttl};",
        "            proxy_cache_revalidate on;",
        "            proxy_cache_background_update on;",
        "            proxy_cache_use_stale error timeout updating http_403 http_500 http_502"
        " http_503 http_504;",
        "            proxy_set_header Accept-Encoding gzip;",
        f"            location ~ {_package_pattern()} {{",
        "                limit_except GET { deny all; }",
        f"                proxy_pass {upstream};",
        f"                slice {SLICE};",
        "                proxy_cache_key $uri$slice_range;",
        "                proxy_set_header Range $slice_range;",
        "                proxy_set_header Accept-Encoding identity;",
        "                proxy_hide_header ETag;",
        f"                proxy_cache_valid 200 206 {PACKAGE_VALIDITY};",
        f"                proxy_cache_valid 404 {PACKAGE_404_VALIDITY};",
        "                proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504;",
        "            }",
        f"            {_listings(route)} {{",
        "                deny all;",
        "            }",
        "        }",
    ]


def nginx_config(server: CacheServer, layout: Layout) -> str:
    """The whole nginx configuration of the cache (nginx runs with ``-c`` on it, so it includes
    nothing of the distribution's: no default site listens anywhere)."""
    temp = f"{STATE_DIR}/tmp"
    lines = [
        "# labtorch lab cache: nginx as a caching proxy of the package mirror.",
        "# Written by labtorch (labtorch/rules/cache.py): the next deploy replaces any change.",
        f"user {NGINX_USER};",
        "worker_processes auto;",
        f"pid {PID_PATH};",
        f"error_log {ERROR_LOG} warn;",
        "",
        "events {",
        "    worker_connections 1024;",
        "}",
        "",
        "http {",
        "    default_type application/octet-stream;",
        "    server_tokens off;",
        "    sendfile on;",
        *(
            f"    {kind}_temp_path {temp}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
        f"    log_format labtorch_cache escape=json {_CACHE_LOG};",
        f"    log_format labtorch_upstream escape=json {_UPSTREAM_LOG};",
        f"    proxy_cache_path {server.directory} levels=1:2 keys_zone={KEYS_ZONE} "
        f"max_size={server.max_size} inactive={INACTIVE} use_temp_path=off;",
        "",
        "    # Where each route's files come from: one server per upstream rank, on a unix",
        "    # socket (0: the mirror, then each fallback mirror).",
    ]
    for rank in range(layout.ranks):
        lines += _upstream_server(rank, layout.routes)
    lines += ["", "    # Each route's mirror, then its fallbacks as backup servers."]
    for index, route in enumerate(layout.routes):
        lines += _upstream_block(index, route)
    lines += [
        "",
        "    # The cache, where the hosts install from.",
        "    server {",
        f"        listen {server.listen};",
        f"        access_log {ACCESS_LOG} labtorch_cache;",
        "        autoindex off;",
        "        gunzip on;",
        "        proxy_cache labtorch;",
        "        proxy_cache_lock on;",
        f"        proxy_cache_lock_timeout {LOCK_TIMEOUT};",
        f"        proxy_cache_lock_age {LOCK_TIMEOUT};",
        "        proxy_ignore_headers Cache-Control Expires Set-Cookie Vary X-Accel-Expires;",
        "        proxy_next_upstream error timeout http_403 http_500 http_502 http_503 http_504;",
        "        proxy_read_timeout 300s;",
        f"        location = {HEALTH_PATH} {{",
        "            limit_except GET { deny all; }",
        "            access_log off;",
        "            stub_status;",
        "        }",
    ]
    for index, route in enumerate(layout.routes):
        lines += _location(index, route, server)
    lines += ["        location / {", "            deny all;", "        }", "    }", "}"]
    return "\n".join(lines) + "\n"


def systemd_unit(nginx: str) -> str:
    """The cache's own service: nginx on labtorch's configuration, beside (never instead of)
    the distribution's nginx service. Stale sockets of a killed nginx are removed first."""
    base = f"{nginx} -e {ERROR_LOG} -c {CONFIG_PATH}"
    sockets = shlex.quote(f"rm -f {STATE_DIR}/upstream-*.sock")
    return "\n".join(
        [
            "# labtorch lab cache: written by labtorch, replaced by the next deploy.",
            "[Unit]",
            "Description=labtorch lab cache (nginx caching proxy of the package mirror)",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=forking",
            f"PIDFile={PID_PATH}",
            f"ExecStartPre=/bin/sh -c {sockets}",
            f"ExecStartPre={base} -t -q",
            f"ExecStart={base}",
            f"ExecReload={base} -s reload",
            f"ExecStop={base} -s quit",
            "TimeoutStopSec=10",
            "",
            "[Install]",
            "WantedBy=multi-user.target",
            "",
        ]
    )


# --- what a host runs before installing through the cache ------------------------------------


def reach_check(url: str) -> str:
    """A POSIX sh command that succeeds when the cache at ``url`` answers; otherwise it prints
    ``labtorch-cache: bypassed <url>: <why>`` on stdout and fails. curl, else wget, else
    python3: whichever the host has."""
    health = shlex.quote(url.rstrip("/") + HEALTH_PATH)
    python = (
        "import sys, urllib.request\n"
        "try:\n"
        "    urllib.request.urlopen(sys.argv[1], timeout=10)\n"
        "except Exception as exc:\n"
        "    sys.exit(str(exc))"
    )
    probe = (
        "if command -v curl >/dev/null 2>&1; then "
        f"curl -fsS --max-time 10 -o /dev/null {health}; "
        "elif command -v wget >/dev/null 2>&1; then "
        f"wget -q -T 10 -t 1 -O /dev/null {health} || {{ echo 'wget: no answer' >&2; false; }}; "
        f"else python3 -c {shlex.quote(python)} {health}; fi"
    )
    note = shlex.quote(f"{BYPASS_MARK}bypassed {url.rstrip('/')}: ")
    return (
        f"labtorch_cache=$( {{ {probe}; }} 2>&1 ) || "
        f'{{ echo {note}"$(echo "$labtorch_cache" | tail -n 1)"; false; }}'
    )


def after_failed_install(url: str) -> str:
    """What a host prints when its install through the cache failed and it goes on without."""
    note = f"{BYPASS_MARK}bypassed {url.rstrip('/')}: the install through it failed"
    return f"{{ echo {shlex.quote(note)}; false; }}"


def bypass_notes(lines: Sequence[str]) -> list[str]:
    """The bypass notes a host's install printed (stdout), without the mark."""
    marked = (line.strip() for line in lines)
    return [line[len(BYPASS_MARK) :] for line in marked if line.startswith(BYPASS_MARK)]


# --- what the cache did in a run -------------------------------------------------------------


def _status(entry: Mapping) -> int:
    try:
        return int(entry.get("status") or 0)
    except (TypeError, ValueError):
        return 0


def upstream_notes(entries: Sequence[Mapping], layout: Layout) -> list[str]:
    """The report's notes on the cache host from the upstream log of one run (its entries,
    ``labtorch.facts.cache_host.parse_upstream_log``): how much the cache fetched, and which
    files a fallback mirror served because the mirror failed (403, 5xx, a timeout: 504)."""
    fetched = [entry for entry in entries if _status(entry) in (200, 206)]
    notes = []
    if fetched:
        size = sum(int(entry.get("bytes") or 0) for entry in fetched) / 2**20
        notes.append(
            f"the cache fetched {len(fetched)} file(s) or slice(s), {size:.1f} MiB, from upstream"
        )
    failed: dict[int, int] = {}
    served: dict[str, int] = {}
    for entry in entries:
        rank, status = entry.get("rank"), _status(entry)
        if rank == 0 and status >= 400 and status != 404:
            failed[status] = failed.get(status, 0) + 1
        route = layout.route_of(unquote(urlsplit(str(entry.get("uri", ""))).path))
        if isinstance(rank, int) and rank > 0 and status in (200, 206) and route:
            source = route.source(rank)
            served[source] = served.get(source, 0) + 1
    why = ", ".join(f"{status} to {count}" for status, count in sorted(failed.items()))
    for source, count in served.items():
        notes.append(
            f"{count} file(s) or slice(s) came from the fallback mirror {source}"
            f" (the mirror answered {why or 'with errors'})"
        )
    if failed and not served:
        notes.append(f"the mirror failed requests of the cache: answered {why}")
    return notes


# --- warming the cache with a lock's files ---------------------------------------------------

_WARM = f"""import sys, urllib.request
from concurrent.futures import ThreadPoolExecutor

def get(url):
    request = urllib.request.Request(url, headers={{"User-Agent": "{WARM_AGENT}"}})
    try:
        with urllib.request.urlopen(request, timeout=3600) as answer:
            while answer.read(1 << 20):
                pass
    except Exception as exc:
        return f"{{url}}: {{exc}}"

urls = sys.argv[1:]
failed = [f for f in ThreadPoolExecutor({WARM_PARALLEL}).map(get, urls) if f]
done = len(urls) - len(failed)
print(f"{WARM_MARK}warmed the cache with {{done}} of {{len(urls)}} locked file(s)")
for failure in failed:
    print(f"{WARM_MARK}not warmed: {{failure}}")"""


def warm_command(urls: Sequence[str], url: str, local: str) -> str:
    """On the cache host: fetch each of ``urls`` (the locks' files, on the cache at ``url``)
    once through the cache at ``local``, several at a time, so that the hosts' installs
    find them there. Best effort: it always succeeds, and says what it could not fetch."""
    base = url.rstrip("/")
    local_urls = [local.rstrip("/") + u[len(base) :] for u in urls if u.startswith(base + "/")]
    words = " ".join(shlex.quote(u) for u in local_urls)
    return (
        f"if command -v python3 >/dev/null 2>&1; then python3 -c {shlex.quote(_WARM)} {words};"
        f" else echo {shlex.quote(WARM_MARK + 'no python3 on the cache host to warm it')}; fi"
    )


def warm_notes(lines: Sequence[str]) -> list[str]:
    """What the warming printed, without the mark."""
    marked = (line.strip() for line in lines)
    return [line[len(WARM_MARK) :] for line in marked if line.startswith(WARM_MARK)]
