"""The lab cache's rules on what the TUNA-shaped mirrors of the other tests never are: a mirror
that carries one conda channel and no PyPI, wheel pages at the root of their host, the address
the cache host reaches itself at for each kind of bind address, an upstream status that is not
a number, and the warming run for real against a local server."""

from __future__ import annotations

import http.server
import subprocess
import threading
from pathlib import Path

import pytest

from labtorch.data.mirrors import Mirror, MirrorCatalog, WheelIndex
from labtorch.rules import cache

LAB = "http://lab.example"


def _mirror(wheels: str | None) -> Mirror:
    return Mirror(
        name="site",
        title="a conda-forge-only site mirror",
        default_channels=(),
        custom_channels=f"{LAB}/conda",
        channels=("conda-forge",),
        pypi=None,
        pytorch_wheels=WheelIndex(wheels, "flat") if wheels else None,
        confirmed=True,
    )


@pytest.mark.parametrize(
    "wheels",
    [
        # Wheel pages at the root of the host, or under a path that is no directory: the cache
        # cannot give them a prefix of their own.
        f"{LAB}/{{variant}}/",
        f"{LAB}/whl-{{variant}}/",
        None,
    ],
)
def test_a_mirror_with_one_channel_and_no_pypi_gives_that_channel_only(wheels) -> None:
    site = _mirror(wheels)
    layout = cache.cache_layout(site, site, [], MirrorCatalog({"site": site}))
    # pytorch, pytorch-lts and nvidia: no mirror of the catalog carries them, no route.
    assert [(r.prefix, r.upstreams, r.sources) for r in layout.routes] == [
        ("/anaconda/cloud/conda-forge/", (f"{LAB}/conda/conda-forge/",), ("site",)),
    ]
    assert (layout.channels, layout.default_channels, layout.wheels) == (("conda-forge",), (), None)


@pytest.mark.parametrize(
    ("bind", "local", "listen"),
    [
        ("0.0.0.0", "http://127.0.0.1:3143", "0.0.0.0:3143"),
        ("::", "http://[::1]:3143", "[::]:3143"),
        ("10.0.0.5", "http://10.0.0.5:3143", "10.0.0.5:3143"),
        ("fd00::5", "http://[fd00::5]:3143", "[fd00::5]:3143"),
    ],
)
def test_the_cache_host_reaches_its_cache_where_it_listens(bind, local, listen) -> None:
    server = cache.CacheServer(bind=bind)
    assert (server.local_url, server.listen) == (local, listen)


@pytest.mark.parametrize(
    "status",
    # nginx logs "-" when no upstream answered and "502, 200" when it tried two.
    ["-", "502, 200", None, [200]],
)
def test_an_upstream_status_that_is_not_a_number_counts_as_none(status) -> None:
    site = _mirror(None)
    layout = cache.cache_layout(site, site, [], MirrorCatalog({"site": site}))
    entry = {"rank": 0, "uri": "/anaconda/cloud/conda-forge/x.conda", "status": status}
    assert cache.upstream_notes([entry], layout) == []


@pytest.fixture
def files(tmp_path: Path):
    """A local HTTP server over a folder with one wheel: the cache as its host reaches it."""
    (tmp_path / "pytorch-wheels").mkdir()
    (tmp_path / "pytorch-wheels" / "torch.whl").write_bytes(b"w" * 3_000_000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_warming_fetches_the_cache_s_files_through_the_local_address(files) -> None:
    url = "http://cache.lab:3143"
    urls = [
        f"{url}/pytorch-wheels/torch.whl",
        f"{url}/pytorch-wheels/missing.whl",
        # Not on the cache: not fetched, not counted.
        "https://download.pytorch.org/whl/cu126/torch.whl",
    ]
    command = cache.warm_command(urls, url, files + "/")
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert cache.warm_notes(["noise", *done.stdout.splitlines()]) == [
        "warmed the cache with 1 of 2 locked file(s)",
        f"not warmed: {files}/pytorch-wheels/missing.whl: HTTP Error 404: File not found",
    ]


def test_warming_without_python3_on_the_cache_host_says_so(tmp_path) -> None:
    command = cache.warm_command([f"{LAB}/a.whl"], LAB, "http://127.0.0.1:3143")
    done = subprocess.run(
        ["/bin/sh", "-c", command],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cache.warm_notes(done.stdout.splitlines()) == ["no python3 on the cache host to warm it"]
