"""The fault matrix, end to end on the lab: one row per fault, each on lab05 (its env removed,
so it must download) beside lab04 (converged). Each row checks the faulted host's reason in
report.json, that the other host is untouched and fine, that nothing of the user's was lost, and
that the next run, the fault gone, repairs lab05 and changes nothing else."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from labhelpers import deploy as run_deploy
from labhelpers import deploy_process, finished, running_lab, ssh

from labtorch_sim import lab
from labtorch_sim.mirror import set_fault

PAIR = ("--limit", "lab04", "--limit", "lab05")
USER_KEY = "envs_dirs:\n- /data/envs\n"
LOCK = "/opt/conda/envs/torch.labtorch-lock"
# conda's own words for what the mirror refused: a failed download (CondaHTTPError, several at
# once as CondaMultiError), or a channel that answers 404 to its index (UnavailableInvalidChannel).
CONDA_HTTP_ERRORS = {"CondaHTTPError", "CondaMultiError", "UnavailableInvalidChannel"}
KILL_CONDA = (
    'me=$(readlink /proc/self/ns/mnt); for p in $(pgrep -f "[l]abtorch_sim.conda"); do '
    '[ "$(readlink /proc/$p/ns/mnt)" = "$me" ] && kill -9 "$p"; done; true'
)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory, "faults-lab") as state_dir:
        status, results, _ = run_deploy(state_dir, state_dir, *PAIR)
        assert status == 0, results
        assert (
            ssh(state_dir, "lab04", f"printf '{USER_KEY}' >> /opt/conda/.condarc").returncode == 0
        )
        status, _, _ = run_deploy(state_dir, state_dir, *PAIR)
        assert status == 0
        yield state_dir


def records(lab_dir: Path) -> dict[str, dict]:
    return {h["name"]: h for h in json.loads((lab_dir / "report.json").read_text())["hosts"]}


def changed(results: dict) -> set[str]:
    return {name for op in results["operations"] for name in op["success"]}


def break_lab05(lab_dir: Path) -> None:
    """lab05 loses its env and its package cache: the next install must download everything."""
    assert ssh(lab_dir, "lab05", "rm -rf /opt/conda/envs/torch /opt/conda/pkgs").returncode == 0


def assert_repaired_and_the_rest_intact(lab_dir: Path) -> None:
    status, results, _ = run_deploy(lab_dir, lab_dir, *PAIR)
    assert status == 0, results
    assert changed(results) == {"lab05"}
    hosts = records(lab_dir)
    assert hosts["lab05"]["status"] == hosts["lab04"]["status"] == "ok"
    condarc = ssh(lab_dir, "lab04", "cat /opt/conda/.condarc").stdout.decode()
    assert USER_KEY in condarc
    status, again, _ = run_deploy(lab_dir, lab_dir, *PAIR)
    assert status == 0 and changed(again) == set()


# (fault, on the fallback too, lab05's outcome: a note or a failure)
MIRROR_FAULTS = [
    ("404", False, "fallback"),
    ("down", False, "fallback"),
    ("slow", False, "ok"),
    ("404", True, "failed"),
    ("403", True, "failed"),
    ("down", True, "failed"),
]


@pytest.mark.parametrize(("fault", "both", "outcome"), MIRROR_FAULTS)
def test_a_mirror_fault_fails_or_falls_back_for_the_host_that_downloads(
    lab_dir, fault, both, outcome
):
    break_lab05(lab_dir)
    state = lab.mirror_state_dir(lab_dir)
    prefixes = ["/anaconda/", *(["/fallback/anaconda/"] if both else [])]
    for prefix in prefixes:
        set_fault(state, prefix, fault, delay_s=1.0)
    try:
        status, results, _ = run_deploy(lab_dir, lab_dir, *PAIR)
    finally:
        for prefix in prefixes:
            set_fault(state, prefix, None)
    hosts = records(lab_dir)
    assert hosts["lab04"]["status"] == "ok"
    assert "lab04" not in changed(results)
    lab05 = hosts["lab05"]
    if outcome == "failed":
        assert status == 1
        assert lab05["step"].startswith("Install torch into the conda env"), lab05["step"]
        assert lab05["reason"].split(":")[0] in CONDA_HTTP_ERRORS, lab05["reason"]
        assert_repaired_and_the_rest_intact(lab_dir)
        return
    assert status == 0, results
    assert lab05["status"] == "ok"
    notes = " ".join(lab05["probe"]["notes"])
    if outcome == "fallback":
        assert "came from the fallback mirror" in notes
    else:
        assert "fallback" not in notes


def _kill_host(lab_dir: Path, name: str) -> None:
    """Every process of the host: its sshd and what its sessions run (its mount namespace)."""
    pid = int((lab_dir / "hosts" / name / "pid").read_text())
    namespace = os.readlink(f"/proc/{pid}/ns/mnt")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "mnt") == namespace:
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue


def test_a_host_down_before_the_run_fails_alone_and_is_repaired_when_back(lab_dir):
    """lab05's sshd does not answer (stopped): the run goes on without it, its record says it
    could not be reached; answering again, the next run finds it as it was."""
    sshd = int((lab_dir / "hosts" / "lab05" / "pid").read_text())
    os.kill(sshd, signal.SIGSTOP)
    try:
        status, results, _ = run_deploy(lab_dir, lab_dir, *PAIR)
    finally:
        os.kill(sshd, signal.SIGCONT)
    assert status == 1
    hosts = records(lab_dir)
    assert hosts["lab04"]["status"] == "ok"
    assert "lab04" not in changed(results or {"operations": []})
    assert hosts["lab05"]["reason"] == "the host could not be reached"
    assert hosts["lab05"]["in_this_run"]
    status, results, _ = run_deploy(lab_dir, lab_dir, *PAIR)
    assert status == 0, results
    assert changed(results) == set()


def test_a_host_lost_mid_install_gets_its_step_and_the_next_run_repairs_it(lab_dir):
    """lab05 dies while its install downloads (the mirror is slow); the run goes on for lab04;
    lab05's record names the step; back up, its lock from the dead run is taken over and the
    env repaired."""
    break_lab05(lab_dir)
    state = lab.mirror_state_dir(lab_dir)
    set_fault(state, "/anaconda/", "slow", delay_s=4.0)
    try:
        run = deploy_process(lab_dir, lab_dir, *PAIR)
        for _ in range(150):
            if ssh(lab_dir, "lab05", f"test -d {LOCK}").returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("lab05's install never started")
        time.sleep(1.0)
        _kill_host(lab_dir, "lab05")
        status, _, stderr = finished(run, timeout_s=300)
    finally:
        set_fault(state, "/anaconda/", None)
    assert status == 1, stderr
    hosts = records(lab_dir)
    assert hosts["lab04"]["status"] == "ok"
    assert hosts["lab05"]["status"] == "failed"
    assert hosts["lab05"]["step"] == "Install torch into the conda env", hosts["lab05"]
    lab.up(None, None, lab_dir)
    assert ssh(lab_dir, "lab05", f"test -d {LOCK}").returncode == 0  # left by the dead run
    assert_repaired_and_the_rest_intact(lab_dir)
    assert ssh(lab_dir, "lab05", f"test -e {LOCK}").returncode != 0


def test_a_full_disk_fails_the_install_with_its_error_and_the_next_run_repairs_it(lab_dir):
    """lab05's package cache sits on a 64 KiB filesystem: the download fails with the disk's own
    error at the install step; the disk freed, the next run repairs it."""
    break_lab05(lab_dir)
    full = "mkdir -p /opt/conda/pkgs && mount -t tmpfs -o size=64k labtorch-full /opt/conda/pkgs"
    assert ssh(lab_dir, "lab05", full).returncode == 0
    try:
        status, _, _ = run_deploy(lab_dir, lab_dir, *PAIR)
    finally:
        assert ssh(lab_dir, "lab05", "umount /opt/conda/pkgs").returncode == 0
    assert status == 1
    hosts = records(lab_dir)
    assert hosts["lab04"]["status"] == "ok"
    assert hosts["lab05"]["step"].startswith("Install torch into the conda env")
    assert "space" in hosts["lab05"]["reason"].lower(), hosts["lab05"]["reason"]
    assert_repaired_and_the_rest_intact(lab_dir)


def test_conda_killed_mid_install_is_retried_from_the_fallback(lab_dir):
    """conda dies (SIGKILL) while it downloads lab05's packages from the first mirror: the
    install counts as failed there and is done again from the fallback, in the same run; lab05
    passes its probe with the fallback noted, lab04 is untouched, the rerun changes nothing."""
    break_lab05(lab_dir)
    state = lab.mirror_state_dir(lab_dir)
    set_fault(state, "/anaconda/", "slow", delay_s=4.0)
    try:
        run = deploy_process(lab_dir, lab_dir, *PAIR)
        for _ in range(150):
            if ssh(lab_dir, "lab05", "pgrep -f '[l]abtorch_sim.conda' >/dev/null").returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("lab05's conda never started")
        # The hosts share this machine's process table: only lab05's own conda (its mount
        # namespace's) is killed, never lab04's.
        assert ssh(lab_dir, "lab05", KILL_CONDA).returncode == 0
        status, _, stderr = finished(run, timeout_s=300)
    finally:
        set_fault(state, "/anaconda/", None)
    assert status == 0, stderr
    hosts = records(lab_dir)
    assert hosts["lab04"]["status"] == hosts["lab05"]["status"] == "ok"
    assert "came from the fallback mirror" in " ".join(hosts["lab05"]["probe"]["notes"])
    status, again, _ = run_deploy(lab_dir, lab_dir, *PAIR)
    assert status == 0 and changed(again) == set()
