"""The lab cache without a lab: what it serves and from where (tables), the nginx configuration
(its promises, and nginx -t on it), the settings, the host check that runs before an install,
the notes of the report, the choice of the cache host, and the lab's systemctl."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.inventory import Inventory
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host
from test_rules import COMPAT, H100, host

from labtorch.data.mirrors import load_catalog, tuna_layout_mirror
from labtorch.deploy import lab_cache
from labtorch.deploy.settings import SettingsError, check_keys, settings_from
from labtorch.operations import cache as cache_ops
from labtorch.rules import cache
from labtorch.rules.model import Request
from labtorch.rules.plan import plan_for_host
from labtorch_sim import systemctl

CATALOG = load_catalog()
TUNA, BFSU, ALIYUN, NJU = (CATALOG[name] for name in ("tuna", "bfsu", "aliyun", "nju"))
LAB = "http://127.0.0.1:8701"
SITE = tuna_layout_mirror("site", LAB, f"{LAB}/pytorch-wheels/{{variant}}/")
FALLBACK = tuna_layout_mirror(
    f"{LAB}/fallback", f"{LAB}/fallback", f"{LAB}/fallback/pytorch-wheels/{{variant}}/"
)
LAB_CATALOG = CATALOG.with_mirror(SITE).with_mirror(FALLBACK)


def routes(layout: cache.Layout) -> dict[str, list[tuple[str, str]]]:
    return {r.prefix: list(zip(r.upstreams, r.sources, strict=True)) for r in layout.routes}


# ------------------------------------------------------------------------- what it serves


def test_tuna_with_bfsu_keeps_the_layout_and_takes_each_part_from_who_has_it():
    layout = cache.cache_layout(TUNA, ALIYUN, [BFSU], CATALOG)
    got = routes(layout)
    tuna, bfsu = "https://mirrors.tuna.tsinghua.edu.cn", "https://mirrors.bfsu.edu.cn"
    assert got["/anaconda/pkgs/main/"] == [
        (f"{tuna}/anaconda/pkgs/main/", "tuna"),
        (f"{bfsu}/anaconda/pkgs/main/", "bfsu"),
    ]
    assert got["/anaconda/cloud/conda-forge/"] == [
        (f"{tuna}/anaconda/cloud/conda-forge/", "tuna"),
        (f"{bfsu}/anaconda/cloud/conda-forge/", "bfsu"),
    ]
    # TUNA has no nvidia channel (mirrors.md 2.3): SUSTech's, which no fallback has.
    assert got["/anaconda/cloud/nvidia/"] == [
        ("https://mirrors.sustech.edu.cn/anaconda-extra/cloud/nvidia/", "sustech")
    ]
    # PyPI by its root: the simple pages link ../../packages/.
    assert got["/pypi/web/"] == [
        ("https://pypi.tuna.tsinghua.edu.cn/", "tuna"),
        (f"{bfsu}/pypi/web/", "bfsu"),
    ]
    assert got["/pytorch-wheels/"] == [("https://mirrors.aliyun.com/pytorch-wheels/", "aliyun")]
    assert layout.default_channels == ("main", "r", "msys2")
    assert "nvidia" in layout.channels and "conda-forge" in layout.channels
    assert layout.wheels.url_template == "/pytorch-wheels/{variant}/"
    assert layout.ranks == 2


def test_the_labs_site_mirror_and_its_fallback_url_back_up_every_route():
    layout = cache.cache_layout(SITE, SITE, [FALLBACK], LAB_CATALOG)
    for route in layout.routes:
        primary, backup = route.upstreams
        assert primary == f"{LAB}{route.prefix}"
        assert backup == f"{LAB}/fallback{route.prefix}"
        assert route.sources == ("site", f"{LAB}/fallback")
    assert "/pytorch-wheels/" in routes(layout)


@pytest.mark.parametrize(
    ("wheel_mirror", "prefix", "template", "layout"),
    [
        (ALIYUN, "/pytorch-wheels/", "/pytorch-wheels/{variant}/", "flat"),
        (NJU, "/pytorch/whl/", "/pytorch/whl/{variant}", "index"),
    ],
)
def test_the_wheel_pages_keep_their_path_and_layout(wheel_mirror, prefix, template, layout):
    got = cache.cache_layout(TUNA, wheel_mirror, [BFSU], CATALOG)
    assert got.wheels == cache.WheelIndex(template, layout)
    assert routes(got)[prefix][0][1] == wheel_mirror.name


def test_wheel_pages_under_another_route_are_not_routed():
    inside = tuna_layout_mirror("x", "https://x", "https://x/pypi/web/whl/{variant}/")
    layout = cache.cache_layout(TUNA, inside, [], CATALOG.with_mirror(inside))
    assert layout.wheels is None
    assert "/pypi/web/whl/" not in routes(layout)


def test_a_fallback_without_a_part_is_no_backup_for_it():
    layout = cache.cache_layout(SITE, SITE, [BFSU], LAB_CATALOG)
    got = routes(layout)
    assert [name for _, name in got["/anaconda/cloud/conda-forge/"]] == ["site", "bfsu"]
    assert [name for _, name in got["/pytorch-wheels/"]] == ["site"]
    # BFSU has no nvidia: the site mirror's alone.
    assert [name for _, name in got["/anaconda/cloud/nvidia/"]] == ["site"]


def test_a_pip_only_mirror_gives_pypi_and_wheels_only():
    layout = cache.cache_layout(ALIYUN, ALIYUN, [], CATALOG)
    assert routes(layout) == {
        "/pypi/web/": [("https://mirrors.aliyun.com/pypi/", "aliyun")],
        "/pytorch-wheels/": [("https://mirrors.aliyun.com/pytorch-wheels/", "aliyun")],
    }
    assert layout.channels == () and layout.default_channels == ()


def test_the_longest_prefix_serves_a_path():
    layout = cache.cache_layout(TUNA, ALIYUN, [BFSU], CATALOG)
    assert layout.route_of("/anaconda/cloud/nvidia/linux-64/x.conda").prefix == (
        "/anaconda/cloud/nvidia/"
    )
    assert layout.route_of("/etc/passwd") is None


def test_a_plan_through_the_cache_pins_the_same_from_the_cache():
    layout = cache.cache_layout(TUNA, ALIYUN, [BFSU], CATALOG)
    mirror = cache.cache_mirror("http://10.0.0.5:3143", layout)
    catalog = CATALOG.with_mirror(mirror)
    facts = host("570.86", "12.8", H100)
    for torch, channel in (("2.7.1", "auto"), ("2.3.1", "pytorch")):
        direct = plan_for_host(facts, Request(torch, conda_channel=channel), COMPAT, CATALOG)
        request = Request(torch, conda_channel=channel, mirror=cache.CACHE_MIRROR)
        cached = plan_for_host(facts, request, COMPAT, catalog)
        assert [p.spec for p in cached.packages] == [p.spec for p in direct.packages]
        assert cached.channel_urls
        assert all(url.startswith("http://10.0.0.5:3143/anaconda/") for url in cached.channel_urls)
    wheels = plan_for_host(
        host("570.86", "12.8", H100, python="3.11"),
        Request("2.9.1", installer="pip", variant="cu126", mirror=cache.CACHE_MIRROR,
                wheel_mirror=cache.CACHE_MIRROR),
        COMPAT,
        catalog,
    )  # fmt: skip
    assert wheels.index_url == "http://10.0.0.5:3143/pypi/web/simple"
    assert wheels.wheel_index == ("flat", "http://10.0.0.5:3143/pytorch-wheels/cu126/")


# ------------------------------------------------------------------ the nginx configuration

LAB_SERVER = cache.CacheServer(port=9701, bind="127.0.0.1", max_size="2g", index_ttl="5m")


def lab_config() -> str:
    return cache.nginx_config(LAB_SERVER, cache.cache_layout(SITE, SITE, [FALLBACK], LAB_CATALOG))


def blocks(text: str, opener: str) -> list[str]:
    """The text of each block whose first line starts with ``opener`` (brace-matched)."""
    found, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(opener):
            depth, body = 0, []
            for inner in lines[i:]:
                body.append(inner)
                depth += inner.count("{") - inner.count("}")
                if depth == 0:
                    break
            found.append("\n".join(body))
    return found


def test_the_cache_listens_only_where_it_is_told():
    text = lab_config()
    listens = [line.strip() for line in text.splitlines() if line.strip().startswith("listen ")]
    network = [line for line in listens if not line.startswith("listen unix:")]
    assert network == ["listen 127.0.0.1:9701;"]
    ipv6 = cache.CacheServer(bind="::1", port=3143)
    assert ipv6.listen == "[::1]:3143"
    assert "include" not in text  # nothing of the distribution's configuration


def test_every_location_of_the_cache_allows_get_and_head_only():
    text = lab_config()
    front = text[text.index("# The cache, where the hosts install from.") :]
    locations = blocks(front, "location ")
    refusals = [b for b in locations if b.splitlines()[1].strip() == "deny all;"]
    serving = [b for b in locations if b not in refusals]
    assert serving
    for location in serving:
        assert "limit_except GET { deny all; }" in location.splitlines()[1], location
        assert "return " not in location  # it would answer before limit_except acts
    assert any(b.startswith("        location / {") for b in refusals)  # outside the layout
    assert "autoindex off;" in front and "autoindex on" not in text


def test_the_mirrors_directory_listings_are_refused():
    text = lab_config()
    front = text[text.index("# The cache, where the hosts install from.") :]
    conda = blocks(front, "location /anaconda/cloud/conda-forge/ {")[0]
    assert "location ~ /$ {\n                deny all;" in conda
    pypi = blocks(front, "location /pypi/web/ {")[0]
    assert "location ~ ^/pypi/web/((?!simple/).*/)?$ {" in pypi
    wheels = blocks(front, "location /pytorch-wheels/ {")[0]
    assert "location = /pytorch-wheels/ {" in wheels


def test_fallbacks_are_backup_servers_tried_on_403_5xx_and_timeouts():
    text = lab_config()
    upstreams = blocks(text, "upstream labtorch_route_")
    assert upstreams
    for block in upstreams:
        servers = [line.strip() for line in block.splitlines() if "server unix:" in line]
        assert servers[0].endswith("upstream-0.sock;")
        assert all(line.endswith("backup;") for line in servers[1:])
    assert "proxy_next_upstream error timeout http_403 http_500 http_502 http_503 http_504;" in text
    assert f"proxy_pass {LAB}/fallback/anaconda/cloud/conda-forge/;" in text


def test_packages_are_kept_in_slices_under_the_lock_and_indexes_short_lived_and_stale():
    whole = lab_config()
    assert "keys_zone=labtorch:64m max_size=2g" in whole
    text = whole[whole.index("# The cache, where the hosts install from.") :]
    assert "proxy_cache_lock on;" in text
    assert f"proxy_cache_lock_timeout {cache.LOCK_TIMEOUT};" in text
    index = blocks(text, "location /anaconda/cloud/conda-forge/ {")[0]
    package = blocks(index, "location ~ ")[0]
    assert r"location ~ \.(conda|tar\.bz2|whl)$ {" in package
    assert "slice 4m;" in package and "proxy_cache_key $uri$slice_range;" in package
    assert "proxy_cache_valid 200 206 365d;" in package
    outer = index.replace(package, "")
    assert "slice" not in outer
    assert "proxy_cache_valid 200 404 5m;" in outer
    assert "updating http_403 http_500 http_502 http_503 http_504;" in outer
    assert "proxy_cache_background_update on;" in outer


def test_a_tuna_configuration_verifies_the_mirrors_certificates():
    text = cache.nginx_config(
        cache.CacheServer(), cache.cache_layout(TUNA, ALIYUN, [BFSU], CATALOG)
    )
    tuna = blocks(text, "location /anaconda/cloud/conda-forge/ {")[0]
    assert "proxy_pass https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge/;" in tuna
    assert "proxy_ssl_server_name on;" in tuna and "proxy_ssl_verify on;" in tuna


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make system)")
def test_nginx_accepts_the_configuration(tmp_path: Path):
    # The fixed paths moved under tmp_path: nginx -t opens the logs it names.
    text = lab_config()
    for fixed in (cache.STATE_DIR, cache.LOG_DIR):
        text = text.replace(fixed, str(tmp_path / fixed.strip("/")))
    text = text.replace(f"user {cache.NGINX_USER};", "")
    (tmp_path / cache.STATE_DIR.strip("/") / "tmp").mkdir(parents=True)
    (tmp_path / cache.LOG_DIR.strip("/")).mkdir(parents=True)
    text = text.replace(LAB_SERVER.directory, str(tmp_path / "cache"))
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    done = subprocess.run(
        ["nginx", "-t", "-q", "-e", str(tmp_path / "error.log"), "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _nginx(config: Path, text: str) -> None:
    config.write_text(text)
    done = subprocess.run(["nginx", "-e", str(config.parent / "error.log"), "-c", str(config)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


_STATIC = """user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    log_format ranges '$uri $status $http_range';
    access_log {dir}/access.log ranges;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/root;
        location / {{
            if ($http_range ~ "^bytes=({blocked})-") {{ return 403; }}
        }}
    }}
}}
"""


@pytest.fixture
def nginx_pids(tmp_path: Path):
    """The nginx masters a test starts, stopped by their pid afterwards."""
    yield tmp_path
    for pid_file in tmp_path.rglob("nginx.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGQUIT)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nginx") is None, reason="root and nginx")
def test_big_files_come_in_slices_whole_and_from_the_fallback_when_the_mirror_blocks(nginx_pids):
    """Against real nginx static servers (ranges and ETags, as TUNA and BFSU answer): a 10 MiB
    file crosses in three 4 MiB slices, once; a file whose later slices the mirror refuses (403)
    takes them from the fallback, whose ETags differ, and comes out whole all the same."""
    tmp = nginx_pids
    path = "/anaconda/cloud/conda-forge/linux-64/"
    data = bytes(range(256)) * (10 * 4096)  # 10 MiB
    ports = {name: _free_port() for name in ("mirror", "fallback", "cache")}
    for name, blocked in (("mirror", "4194304|8388608"), ("fallback", "nothing")):
        root = tmp / name / "root" / path.strip("/")
        root.mkdir(parents=True)
        for file in ("big-1.0-0.conda", "big-2.0-0.conda"):
            (root / file).write_bytes(data)
            stamp = 1_700_000_000 if name == "mirror" else 1_600_000_000  # another ETag
            os.utime(root / file, (stamp, stamp))
        text = _STATIC.format(dir=tmp / name, port=ports[name], blocked=blocked)
        if name == "mirror":  # the first file in full; the second one's slices 2 and 3 refused
            text = text.replace("location / {", "location ~ big-1 { }\n        location / {")
        _nginx(tmp / name / "nginx.conf", text)
    site = tuna_layout_mirror("site", f"http://127.0.0.1:{ports['mirror']}")
    backup = tuna_layout_mirror("backup", f"http://127.0.0.1:{ports['fallback']}")
    layout = cache.cache_layout(site, None, [backup], CATALOG.with_mirror(site).with_mirror(backup))
    server = cache.CacheServer(port=ports["cache"], bind="127.0.0.1", directory=str(tmp / "c"))
    text = cache.nginx_config(server, layout)
    for fixed in (cache.STATE_DIR, cache.LOG_DIR):
        text = text.replace(fixed, str(tmp / fixed.strip("/")))
        (tmp / fixed.strip("/") / "tmp").mkdir(parents=True)
    text = text.replace(f"user {cache.NGINX_USER};", "user root;")
    _nginx(tmp / "cache.conf", text)

    def get(file: str) -> bytes:
        url = f"http://127.0.0.1:{ports['cache']}{path}{file}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.read()

    def ranges(name: str) -> list[str]:
        lines = (tmp / name / "access.log").read_text().splitlines()
        return [line.split(" ", 2)[1:] for line in lines]

    assert get("big-1.0-0.conda") == data
    assert get("big-1.0-0.conda") == data  # a hit: the mirror sees nothing more
    slices = ["bytes=0-4194303", "bytes=4194304-8388607", "bytes=8388608-12582911"]
    assert ranges("mirror") == [["206", r] for r in slices]
    assert get("big-2.0-0.conda") == data
    assert ranges("mirror")[3:] == [["206", slices[0]], ["403", slices[1]], ["403", slices[2]]]
    assert ranges("fallback") == [["206", slices[1]], ["206", slices[2]]]


def test_the_unit_runs_nginx_on_labtorchs_configuration_only():
    unit = cache.systemd_unit("/usr/sbin/nginx")
    base = f"/usr/sbin/nginx -e {cache.ERROR_LOG} -c {cache.CONFIG_PATH}"
    assert f"ExecStartPre={base} -t -q" in unit
    assert f"ExecStart={base}\n" in unit
    assert f"ExecReload={base} -s reload" in unit
    assert f"PIDFile={cache.PID_PATH}" in unit and "Type=forking" in unit


# ---------------------------------------------------------------------------- the settings


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("torch_cache_host", "auto"),
        ("torch_cache_host", "off"),
        ("torch_cache_host", "lab01"),
        ("torch_cache_port", 3143),
        ("torch_cache_bind", "10.0.0.5"),
        ("torch_cache_bind", "::"),
        ("torch_cache_url", "http://cache.lab:3143"),
        ("torch_cache_url", "https://10.0.0.5/"),
        ("torch_cache_url", None),
        ("torch_cache_max_size", "500m"),
        ("torch_cache_dir", "/srv/cache/labtorch"),
        ("torch_cache_index_ttl", "10m"),
    ],
)
def test_good_cache_settings_pass(key, value):
    check_keys({key: value}, "all")
    if value is not None:
        assert getattr(settings_from({key: value}), key.removeprefix("torch_")) == value


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("torch_cache_host", "lab 01", "a host name"),
        ("torch_cache_port", "3143", "a TCP port"),
        ("torch_cache_port", 70000, "a TCP port"),
        ("torch_cache_port", True, "a TCP port"),
        ("torch_cache_bind", "cache.lab", "an IP address"),
        ("torch_cache_url", "http://cache.lab:3143/mirror", "no path"),
        ("torch_cache_url", "cache.lab:3143", "base URL"),
        ("torch_cache_max_size", "50GB", "size"),
        ("torch_cache_max_size", 50, "is the number 50"),
        ("torch_cache_dir", "var/cache", "absolute directory"),
        ("torch_cache_dir", "/var/../etc", "absolute directory"),
        ("torch_cache_index_ttl", "10", "time"),
    ],
)
def test_bad_cache_settings_are_refused(key, value, problem):
    with pytest.raises(SettingsError) as caught:
        check_keys({key: value}, "all")
    assert problem in str(caught.value)


# --------------------------------------------------------------- which host, and its URL


def inventory(*groups: tuple[str, list], **data) -> Inventory:
    names = ["lab01", "lab02", "lab03"]
    hosts = [(name, {"ssh_hostname": "10.0.0.1" if name == "lab01" else "::1"}) for name in names]
    return Inventory((hosts, data), **dict(groups))


def test_the_cache_host_is_the_cache_groups_or_the_named_one():
    settings = settings_from({})
    assert lab_cache.site_for(inventory(), settings) is None
    site = lab_cache.site_for(inventory(("cache", (["lab01"], {}))), settings)
    assert (site.name, site.url) == ("lab01", "http://10.0.0.1:3143")
    named = lab_cache.site_for(inventory(), settings_from({"torch_cache_host": "lab02"}))
    assert (named.name, named.url) == ("lab02", "http://[::1]:3143")
    off = settings_from({"torch_cache_host": "off"})
    assert lab_cache.site_for(inventory(("cache", (["lab01"], {}))), off) is None


def test_the_cache_hosts_own_settings_say_how_it_serves():
    inv = inventory(("cache", (["lab01"], {"torch_cache_port": 9999, "torch_cache_url": None})))
    site = lab_cache.site_for(inv, settings_from({}))
    assert site.url == "http://10.0.0.1:9999" and site.server.port == 9999


@pytest.mark.parametrize(
    ("groups", "settings", "message"),
    [
        ((("cache", (["lab01", "lab02"], {})),), {}, "has 2 hosts (lab01, lab02)"),
        ((), {"torch_cache_host": "lab99"}, "'lab99' is not a host of the inventory"),
    ],
)
def test_an_ambiguous_or_unknown_cache_host_stops_the_run(groups, settings, message):
    with pytest.raises(PyinfraError) as caught:
        lab_cache.site_for(inventory(*groups), settings_from(settings))
    assert message in str(caught.value)


# ----------------------------------------------------- the check before an install, the notes


class _Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == cache.HEALTH_PATH else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def answering() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _closed_port() -> str:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    port = server.server_port
    server.server_close()
    return f"http://127.0.0.1:{port}"


def run_check(url: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path} if path else None
    return subprocess.run(
        ["/bin/sh", "-c", cache.reach_check(url) + " && echo reached"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.fixture
def python_only(tmp_path: Path) -> str:
    """A PATH with python3 and tail but neither curl nor wget."""
    (tmp_path / "python3").symlink_to(os.path.realpath(sys.executable))
    (tmp_path / "tail").symlink_to(shutil.which("tail"))
    return str(tmp_path)


@pytest.mark.parametrize("client", ["default", "python3"])
def test_the_check_passes_when_the_cache_answers(answering, client, request):
    path = request.getfixturevalue("python_only") if client == "python3" else None
    done = run_check(answering, path)
    assert (done.returncode, done.stdout) == (0, "reached\n")


@pytest.mark.parametrize("client", ["default", "python3"])
def test_the_check_says_why_when_the_cache_does_not_answer(client, request):
    path = request.getfixturevalue("python_only") if client == "python3" else None
    url = _closed_port()
    done = run_check(url, path)
    assert done.returncode != 0
    (note,) = cache.bypass_notes(done.stdout.splitlines())
    assert note.startswith(f"bypassed {url}: ")
    assert "refused" in note.lower() or "connect" in note.lower()


def test_a_failed_install_through_the_cache_is_said_too():
    done = subprocess.run(
        ["sh", "-c", f"false || {cache.after_failed_install('http://c:1')}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert cache.bypass_notes(done.stdout.splitlines()) == [
        "bypassed http://c:1: the install through it failed"
    ]


UPSTREAM = [
    {"rank": 0, "uri": "/anaconda/cloud/conda-forge/linux-64/a.conda", "status": 403, "bytes": 1},
    {
        "rank": 1,
        "uri": "/anaconda/cloud/conda-forge/linux-64/a.conda",
        "status": 200,
        "bytes": 2**20,
    },
    {"rank": 0, "uri": "/pypi/web/simple/torch/", "status": 200, "bytes": 2**20},
    {"rank": 0, "uri": "/anaconda/pkgs/main/noarch/repodata.json.zst", "status": 404, "bytes": 9},
]


@pytest.mark.parametrize(
    ("entries", "notes"),
    [
        ([], []),
        (
            UPSTREAM,
            [
                "the cache fetched 2 file(s) or slice(s), 2.0 MiB, from upstream",
                f"1 file(s) or slice(s) came from the fallback mirror {LAB}/fallback"
                " (the mirror answered 403 to 1)",
            ],
        ),
        (
            [{"rank": 0, "uri": "/pypi/web/simple/x/", "status": 502, "bytes": 0}],
            ["the mirror failed requests of the cache: answered 502 to 1"],
        ),
    ],
)
def test_the_upstream_log_becomes_the_cache_hosts_notes(entries, notes):
    layout = cache.cache_layout(SITE, SITE, [FALLBACK], LAB_CATALOG)
    assert cache.upstream_notes(entries, layout) == notes


def _upstream_log(installed: bool, facts: dict) -> tuple[list, list[str]]:
    state, got = FakeState(), []
    fake = create_host(state, facts=facts)
    layout = cache.cache_layout(SITE, SITE, [FALLBACK], LAB_CATALOG)
    with ctx_state.use(state), ctx_host.use(fake):
        commands = list(
            cache_ops.upstream_log._inner(
                offset=10, layout=layout, installed=lambda: installed, on_notes=got.extend
            )
        )
    return commands, got


def test_the_upstream_log_is_read_only_when_a_host_installed(monkeypatch):
    monkeypatch.setattr(FakeState, "is_executing", True, raising=False)
    assert _upstream_log(False, {}) == ([], [])
    facts = {"pyinfra_facts.CacheUpstreamLog": {"offset=10": UPSTREAM[:2]}}
    commands, notes = _upstream_log(True, facts)
    assert commands == [] and notes[1].startswith("1 file(s) or slice(s) came from the fallback")


# --------------------------------------------------------------------- the lab's systemctl


@pytest.fixture
def units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    etc = tmp_path / "etc"
    monkeypatch.setattr(systemctl, "UNIT_DIRS", (etc, tmp_path / "lib"))
    monkeypatch.setattr(systemctl, "STATE", tmp_path / "state")
    monkeypatch.setattr(systemctl, "LOGS", tmp_path / "logs")
    etc.mkdir()
    return tmp_path


def write_unit(directory: Path, name: str, service: str) -> None:
    install = "[Install]\nWantedBy=multi-user.target\n"
    (directory / "etc" / name).write_text(
        f"[Unit]\nDescription=x\n\n[Service]\n{service}\n{install}"
    )


def ctl(*args: str) -> int:
    return systemctl.main(list(args))


def test_a_forking_service_starts_reloads_and_stops(units: Path):
    pid_file, marks = units / "daemon.pid", units / "marks"
    script = units / "daemon.sh"
    script.write_text(f"#!/bin/sh\nsleep 100 &\necho $! > {pid_file}\n")
    script.chmod(0o755)
    write_unit(
        units,
        "d.service",
        f"Type=forking\nPIDFile={pid_file}\nExecStartPre=/bin/true\nExecStart={script}\n"
        f"ExecReload=/bin/sh -c 'echo reload $MAINPID >> {marks}'\nTimeoutStopSec=1",
    )
    assert ctl("is-active", "d") == 3
    assert ctl("enable", "--now", "d") == 0
    assert ctl("is-active", "d") == 0 and ctl("is-enabled", "d") == 0
    assert (units / "etc" / "multi-user.target.wants" / "d.service").is_symlink()
    pid = int(pid_file.read_text())
    assert ctl("reload", "d") == 0 and marks.read_text() == f"reload {pid}\n"
    assert ctl("start", "d") == 0 and int(pid_file.read_text()) == pid  # already running
    assert ctl("disable", "--now", "d") == 0
    assert ctl("is-active", "d") == 3 and ctl("is-enabled", "d") == 1


def test_a_failing_start_says_which_command_and_what_it_printed(units: Path, capsys):
    write_unit(units, "bad.service", "ExecStartPre=/bin/sh -c 'echo broken config >&2; exit 1'\n"
               "ExecStart=/bin/sleep 100")  # fmt: skip
    assert ctl("start", "bad") == 1
    err = capsys.readouterr().err
    assert "exit status 1" in err and "broken config" in err
    assert ctl("reload", "bad") == 1  # not active


def test_a_simple_service_is_its_own_main_process(units: Path):
    write_unit(units, "s.service", "ExecStart=/bin/sleep 100\nTimeoutStopSec=1")
    assert ctl("start", "s") == 0 and ctl("is-active", "s") == 0
    assert ctl("stop", "s") == 0 and ctl("is-active", "s") == 3


def test_an_unknown_unit_answers_as_systemctl_does(units: Path, capsys):
    assert ctl("start", "nope") == 5
    assert ctl("is-active", "nope") == 3
    assert ctl("is-enabled", "nope") == 1
    assert ctl("disable", "--now", "nope") == 0
    assert ctl("daemon-reload") == 0
    assert "not found" in capsys.readouterr().err


def test_the_lab_installs_it_as_systemctl():
    ((path, (content, mode)),) = systemctl.host_files("/opt/labtorch-sim", sys.executable).items()
    assert path == "bin/systemctl" and mode == 0o755
    assert b"-m labtorch_sim.systemctl" in content
