"""Refusals through the real pyinfra CLI, over real SSH against the simulated lab.

A bad setting must stop the run before any host is touched. "Touched" is measured on the hosts:
every host runs ``~/.ssh/rc`` for each SSH session that runs a command (OpenSSH does so before
the command), and ours appends a line to a file on the host, read here from the host's /root on
this machine. pyinfra connects to every host before it loads the deploy, but a connection alone
runs nothing; a refused run must leave every host without a new line, the mirror without a
request, and no report.

Also here, end to end: the pip route's fallback fetches the wheels from its own wheel page when
the first mirror's wheel pages fail; and what pyinfra does with an inventory that does not exist.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from labhelpers import PYINFRA, REPO, lab_env, running_lab

from labtorch_sim import lab
from labtorch_sim.mirror import read_log, set_fault

RC = '#!/bin/sh\necho "$$ ${SSH_ORIGINAL_COMMAND:-shell}" >> "$HOME/.labtorch-test-sessions"\n'
SESSIONS = ".labtorch-test-sessions"


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Iterator[Path]:
    with running_lab(tmp_path_factory, "e2e-refusals") as state_dir:
        for host in lab.status(state_dir).hosts:
            rc = state_dir / "hosts" / host.name / "root" / ".ssh" / "rc"
            rc.parent.mkdir(exist_ok=True)
            rc.write_text(RC)
        yield state_dir


def sessions(lab_dir: Path) -> dict[str, int]:
    """How many SSH sessions that ran a command each host has seen."""
    counts = {}
    for host in lab.status(lab_dir).hosts:
        log = lab_dir / "hosts" / host.name / "root" / SESSIONS
        counts[host.name] = len(log.read_text().splitlines()) if log.exists() else 0
    return counts


def pyinfra(lab_dir: Path, report_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYINFRA, *args],
        cwd=REPO,
        env=lab_env(lab_dir, report_dir),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def deploy(lab_dir: Path, report_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return pyinfra(lab_dir, report_dir, "inventories/sim.py", "deploys/pytorch.py", "-y", *extra)


def test_the_session_record_sees_a_command(lab_dir, tmp_path):
    """The measure itself: one command on lab01 is one more line there, and nowhere else."""
    before = sessions(lab_dir)
    done = pyinfra(
        lab_dir, tmp_path, "inventories/sim.py", "exec", "-y", "--limit", "lab01", "true"
    )
    assert done.returncode == 0, done.stderr
    after = sessions(lab_dir)
    assert after["lab01"] > before["lab01"]
    assert {h: n for h, n in after.items() if h != "lab01"} == {
        h: n for h, n in before.items() if h != "lab01"
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "torch_env=..",
            "labtorch settings: pyinfra --data: torch_env: must be a plain env name, not a path: "
            "the env is the conda root's envs/<name> or torch_venv_root/<name>, and this would be "
            "outside that directory (.. of conda's envs/ is the conda root: the base env), "
            "not '..'",
        ),
        (
            "torch_env=.",
            "labtorch settings: pyinfra --data: torch_env: must be a plain env name, not a path: "
            "the env is the conda root's envs/<name> or torch_venv_root/<name>, and this would be "
            "that directory itself, not '.'",
        ),
        ("torch_env=../../srv", "torch_env: must be a plain env name, not a path"),
        ("torch_venv_root=venvs", "torch_venv_root: must be an absolute directory"),
        (
            "torch_release=2.3",
            'torch_release: is the number 2.3, not text: quote it, as torch_release = "2.3" '
            "in a file or --data 'torch_release=\"2.3\"' on the command line",
        ),
        (
            "torch_python=3.10",
            'torch_python: is the number 3.1, not text: quote it, as torch_python = "3.10" '
            "in a file or --data 'torch_python=\"3.10\"' on the command line",
        ),
        (
            "torch_wheel_mirror_url=http://x/{variant}/{y}/",
            "torch_wheel_mirror_url: may use only the placeholder {variant}, not {y}",
        ),
    ],
)
def test_a_bad_setting_is_refused_before_any_host_is_touched(lab_dir, tmp_path, data, message):
    report_dir = tmp_path / "report"
    mirror_log = len(read_log(lab.mirror_state_dir(lab_dir)))
    before = sessions(lab_dir)
    done = deploy(lab_dir, report_dir, "--data", data)
    assert done.returncode == 1, done.stderr
    assert message in done.stderr
    assert sessions(lab_dir) == before, "a host ran a command"
    assert len(read_log(lab.mirror_state_dir(lab_dir))) == mirror_log
    assert not report_dir.exists()


def test_the_quoted_form_the_refusal_gives_is_accepted(lab_dir, tmp_path):
    # lab08's driver is not loaded: its plan is a refusal right after the one snapshot command.
    before = sessions(lab_dir)
    done = deploy(lab_dir, tmp_path, "--limit", "lab08", "--data", 'torch_python="3.11"')
    assert "labtorch settings" not in done.stderr
    assert "driver-not-loaded" in done.stderr
    assert sessions(lab_dir)["lab08"] > before["lab08"]


def test_the_pip_fallback_takes_the_wheels_from_its_own_page(lab_dir, tmp_path):
    """lab07 (pip, CPU build from the wheel page) while the first mirror's wheel pages answer
    404: the fallback serves the wheels too, not only PyPI (issue 11)."""
    state = lab.mirror_state_dir(lab_dir)
    start = len(read_log(state))
    set_fault(state, "/pytorch-wheels/", "404")
    try:
        done = deploy(lab_dir, tmp_path, "--limit", "lab07")
    finally:
        set_fault(state, "/pytorch-wheels/", None)
    assert done.returncode == 0, done.stderr
    log = read_log(state)[start:]
    assert {e["status"] for e in log if e["path"].startswith("/pytorch-wheels/")} == {404}
    served = [e["path"] for e in log if e["status"] == 200]
    assert any(p.startswith("/fallback/pytorch-wheels/cpu/torch-2.9.1") for p in served), served


def test_a_missing_inventory_runs_nothing_and_exits_0(tmp_path):
    """pyinfra's own behaviour, which the deploy cannot change: an inventory argument that is
    neither a file nor a host list gives an empty inventory with a warning, and with no host the
    deploy file never runs (so it cannot refuse), no report is written, and the exit status is 0.
    README says so; this test tells us when pyinfra changes it."""
    report_dir = tmp_path / "report"
    done = pyinfra(tmp_path, report_dir, "inventories/nonexistent.py", "deploys/pytorch.py", "-y")
    assert done.returncode == 0
    assert (
        "inventories/nonexistent.py is neither an inventory file, a (list of) hosts or connectors "
        "nor refers to a python module" in done.stderr
    )
    assert "labtorch fleet report" not in done.stderr
    assert not report_dir.exists()
