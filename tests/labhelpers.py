"""Helpers shared by the tests that run against a simulated lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from labtorch_sim import STATE_DIR_ENV, lab

REPO = Path(__file__).resolve().parents[1]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")


@contextmanager
def running_lab(
    tmp_path_factory: pytest.TempPathFactory, name: str, profiles: str | None = None
) -> Iterator[Path]:
    """A lab in a state directory of its own, for one test module (needs root): the default
    hosts (9), or those of ``profiles`` (a profiles file's text, e.g. ``"lab: [h100, cpu]"``)."""
    if os.geteuid() != 0:
        pytest.skip("the simulated lab needs root")
    state_dir = tmp_path_factory.mktemp(name)
    profiles_file = None
    if profiles is not None:
        profiles_file = state_dir / "profiles.yaml"
        profiles_file.write_text(profiles)
    try:
        lab.up(None, profiles_file, state_dir)
        yield state_dir
    finally:
        lab.down(state_dir)


def ssh(lab_dir: Path, host: str, command: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` on a lab host over real SSH, with the lab's own key and known_hosts."""
    return subprocess.run(
        # curve25519: OpenSSH's default post-quantum key exchange costs ~0.1 s of CPU per call.
        [
            "ssh",
            "-F",
            str(lab_dir / "ssh_config"),
            "-o",
            "BatchMode=yes",
            "-o",
            "KexAlgorithms=curve25519-sha256",
            host,
            command,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )


def must(done: subprocess.CompletedProcess[bytes]) -> str:
    """A command's output, once it is known to have succeeded (else its stderr fails the test)."""
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def mirror_url(lab_dir: Path) -> str:
    """Where the lab's mirror answers."""
    mirror = lab.status(lab_dir).mirror
    assert mirror is not None, f"no mirror in {lab_dir}"
    return mirror.url


def lab_env(lab_dir: Path, report_dir: Path | None = None) -> dict[str, str]:
    """The environment of a command run against this lab (``inventories/sim.py`` finds it by
    ``$LABTORCH_SIM_DIR``), its report written to ``report_dir`` (default: the lab's)."""
    report = report_dir if report_dir is not None else lab_dir
    return {**os.environ, STATE_DIR_ENV: str(lab_dir), "LABTORCH_REPORT_DIR": str(report)}


def deploy_process(lab_dir: Path, report_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """The real deploy on a lab, with ``--json``, started and left running."""
    return subprocess.Popen(
        [PYINFRA, "inventories/sim.py", "deploys/pytorch.py", "-y", "--json", *extra],
        cwd=REPO,
        env=lab_env(lab_dir, report_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(run: subprocess.Popen[str], timeout_s: float = 600) -> tuple[int, dict | None, str]:
    """A started deploy, waited for: exit status, pyinfra's results, stderr."""
    try:
        stdout, stderr = run.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        raise
    results = json.loads(stdout)["results"] if stdout.strip() else None
    return run.returncode, results, stderr


def deploy(lab_dir: Path, report_dir: Path, *extra: str) -> tuple[int, dict | None, str]:
    """The real deploy on a lab, with ``--json``: exit status, pyinfra's results, stderr."""
    return finished(deploy_process(lab_dir, report_dir, *extra))


# Every record of where an env's packages came from: conda's package records in every conda env,
# pip's install report (written by labtorch) in every conda env and venv, and pip's
# direct_url.json wherever pip installed from a URL. Printed as "FILE URL" lines.
_ENV_URLS = r"""
import glob, json
def show(path, url):
    print(path, url)
for path in glob.glob("/opt/conda/envs/*/conda-meta/*.json"):
    with open(path) as f:
        show(path, json.load(f).get("url"))
for path in glob.glob("/opt/conda/envs/*/labtorch-pip-report.json") + glob.glob(
    "/opt/labtorch/venvs/*/labtorch-pip-report.json"
):
    with open(path) as f:
        for item in json.load(f).get("install", []):
            show(path, item["download_info"]["url"])
for path in glob.glob("/opt/*/*/*/lib/python3*/site-packages/*.dist-info/direct_url.json"):
    with open(path) as f:
        show(path, json.load(f).get("url"))
"""


def env_urls(lab_dir: Path, host: str) -> list[tuple[str, str]]:
    """Where each package of each env on ``host`` came from: (the file that says so, the URL),
    one per package (pip's install report names several)."""
    done = ssh(lab_dir, host, f"python3 -c '{_ENV_URLS}'")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return [tuple(line.split(" ", 1)) for line in done.stdout.decode().splitlines()]


def not_from_the_mirror(lab_dir: Path, hosts: list[str]) -> dict[str, list[str]]:
    """Every package record on these hosts whose URL is not under the lab's mirror or its
    fallback (the sources the lab's inventory configures), by host and file: empty when all
    are."""
    mirror = lab.status(lab_dir).mirror
    assert mirror is not None
    allowed = (mirror.url + "/",)  # the fallback, mirror.url + FALLBACK, lies under it
    found: dict[str, list[str]] = {}
    for host in hosts:
        for path, url in env_urls(lab_dir, host):
            if not url.startswith(allowed):
                found.setdefault(f"{host}:{path}", []).append(url)
    return found
