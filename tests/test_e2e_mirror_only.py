"""Mirror-only downloads, enforced by the kernel: each lab host lives in a network namespace of its
own that reaches the lab's mirror (and the lab cache) and nothing else (labtorch_sim.network).

Another server on this machine, serving the very same files as the mirror, stands for "anywhere
else": the controller reaches it, a host does not. A host that the deploy sends there fails with
the connection's own error instead of installing quietly from elsewhere, and the hosts that
install from the mirror hold only packages whose records name the mirror.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from labhelpers import deploy, env_urls, not_from_the_mirror, running_lab, ssh

from labtorch_sim import lab
from labtorch_sim.mirror import read_log

# lab01 installs with conda (conda-forge), lab02 and lab03 with pip; lab03 is sent elsewhere.
PROFILES = "lab: [h100, cpu, cpu]\n"
FROM_MIRROR = ["lab01", "lab02"]
SENT_ELSEWHERE = "lab03"
INDEX = "/pypi/web/simple/"


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Iterator[Path]:
    with running_lab(tmp_path_factory, "mirror-only-lab", PROFILES) as state_dir:
        yield state_dir


@pytest.fixture(scope="module")
def elsewhere(lab_dir: Path) -> Iterator[str]:
    """A copy of the mirror on another port of this machine: every file the mirror has."""
    root = lab.mirror_state_dir(lab_dir) / "root"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    server = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + INDEX, timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait()


def fetch_on(lab_dir: Path, host: str, url: str) -> str:
    """What a host gets when it fetches ``url``: the HTTP status, or the error's own words."""
    script = (
        "import sys, urllib.request\n"
        "try:\n"
        "    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)\n"
        "except OSError as exc:\n"
        "    print(getattr(exc, 'reason', exc))\n"
    )
    done = ssh(lab_dir, host, f'python3 -c "{script}" {url}')
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode().strip()


def test_a_host_reaches_the_mirror_and_nothing_else(lab_dir: Path, elsewhere: str):
    mirror = lab.status(lab_dir).mirror
    assert mirror is not None
    assert urllib.request.urlopen(elsewhere + INDEX, timeout=5).status == 200  # from here
    assert fetch_on(lab_dir, "lab01", mirror.url + INDEX) == "200"
    assert "Connection refused" in fetch_on(lab_dir, "lab01", elsewhere + INDEX)
    assert "Network is unreachable" in fetch_on(lab_dir, "lab01", "http://192.0.2.1/")


def test_the_hosts_install_from_the_mirror_only(lab_dir: Path):
    status, _, stderr = deploy(
        lab_dir, lab_dir, *(arg for host in FROM_MIRROR for arg in ("--limit", host))
    )
    assert status == 0, stderr
    for host in FROM_MIRROR:
        assert env_urls(lab_dir, host), f"{host}: no env records"
    assert not_from_the_mirror(lab_dir, FROM_MIRROR) == {}


def test_a_host_sent_elsewhere_fails_with_the_connection_error(lab_dir: Path, elsewhere: str):
    """The deploy points lab03 at the copy (index, wheel pages and fallback): the files exist
    there, so only the network stops it; the host fails, and nothing of torch is installed."""
    before = len(read_log(lab.mirror_state_dir(lab_dir)))
    status, _, stderr = deploy(
        lab_dir,
        lab_dir,
        "--limit",
        SENT_ELSEWHERE,
        "--data",
        f"torch_mirror_url={elsewhere}",
        "--data",
        f"torch_wheel_mirror_url={elsewhere}/pytorch-wheels/{{variant}}/",
        "--data",
        "torch_fallback_mirrors=[]",
    )
    assert status == 1, stderr
    report = json.loads((lab_dir / "report.json").read_text())
    record = {host["name"]: host for host in report["hosts"]}[SENT_ELSEWHERE]
    assert record["status"] == "failed"
    assert record["step"] == "Install torch into the venv", record
    assert f"port={urlsplit(elsewhere).port}" in record["reason"], record["reason"]
    assert "Connection refused" in record["reason"], record["reason"]
    assert not_from_the_mirror(lab_dir, [SENT_ELSEWHERE]) == {}
    assert read_log(lab.mirror_state_dir(lab_dir))[before:] == []
