"""What a run leaves behind, end to end on the lab: a dry run changes nothing anywhere and says
what each host would get; a run limited to some hosts keeps the others' records; a failure names
the step and the first line of the real error; the table leads with the failures by cause."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest
from labhelpers import PYINFRA, REPO, deploy_process, finished, lab_env, running_lab, ssh
from labhelpers import deploy as run_deploy

from labtorch_sim import lab
from labtorch_sim.mirror import read_log, set_fault

# Every file labtorch writes on a host, and the envs it installs into.
OWNED = (
    "/opt/conda/.condarc /opt/conda/.condarc.labtorch-backup /opt/conda/envs/torch/pip.conf "
    "/opt/labtorch/venvs/torch/pip.conf /opt/conda/envs/torch/.labtorch-probe.json "
    "/opt/labtorch/venvs/torch/.labtorch-probe.json"
)
FINGERPRINT = (
    f"for f in {OWNED}; do [ -e $f ] && sha256sum $f; done; "
    "ls -la --time-style=+%s /opt/conda/envs/torch/conda-meta /opt/labtorch/venvs/torch/lib/*/"
    "site-packages 2>/dev/null | sha256sum"
)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory, "run-report-lab") as state_dir:
        status, _, _ = run_deploy(state_dir, state_dir)
        assert status == 1  # the default lab has hosts that fail by design
        yield state_dir


def hosts_of(lab_dir: Path) -> list[str]:
    return [host.name for host in lab.status(lab_dir).hosts]


def fingerprints(lab_dir: Path) -> dict[str, str]:
    return {host: ssh(lab_dir, host, FINGERPRINT).stdout.decode() for host in hosts_of(lab_dir)}


def report(lab_dir: Path) -> dict:
    return json.loads((lab_dir / "report.json").read_text())


def test_a_dry_run_on_a_drifted_lab_changes_nothing_and_shows_each_decision(lab_dir):
    assert ssh(lab_dir, "lab01", "sed -i 's/conda-forge$/defaults/' /opt/conda/.condarc")
    must = ssh(lab_dir, "lab04", "/opt/conda/bin/conda remove -n torch -y -q torchaudio")
    assert must.returncode == 0, must.stderr
    before = fingerprints(lab_dir)
    report_before = (lab_dir / "report.json").read_bytes()
    log_before = len(read_log(lab.mirror_state_dir(lab_dir)))
    # No -y: pyinfra looks for changes by running the operations' generators, probe included.
    done = subprocess.run(
        [PYINFRA, "inventories/sim.py", "deploys/pytorch.py", "--dry"],
        cwd=REPO,
        env=lab_env(lab_dir),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert fingerprints(lab_dir) == before
    assert (lab_dir / "report.json").read_bytes() == report_before
    assert len(read_log(lab.mirror_state_dir(lab_dir))) == log_before
    for host in ("lab01", "lab02", "lab04", "lab05", "lab07"):
        assert f"[{host}] labtorch plan: " in output, host
    lab04 = next(line for line in output.splitlines() if "[lab04] labtorch plan: " in line)
    assert "labtorch plan: cu126 (CUDA 12.6), Python 3.11: pytorch=2.7.1=" in lab04, lab04
    assert "no report" in output


def test_a_limited_run_keeps_the_other_hosts_records(lab_dir):
    earlier = {h["name"]: h for h in report(lab_dir)["hosts"]}
    status, results, _ = run_deploy(lab_dir, lab_dir, "--limit", "lab01")
    assert status == 0, results
    hosts = {h["name"]: h for h in report(lab_dir)["hosts"]}
    assert sorted(hosts) == hosts_of(lab_dir)
    assert hosts["lab01"]["in_this_run"] and hosts["lab01"]["status"] == "ok"
    assert hosts["lab01"]["checked"] != earlier["lab01"]["checked"]
    for name in hosts_of(lab_dir)[1:]:
        assert not hosts[name]["in_this_run"]
        assert hosts[name]["status"] == earlier[name]["status"]
        assert hosts[name]["checked"] == earlier[name]["checked"]
        assert hosts[name]["reason"] == earlier[name]["reason"]


def test_a_failed_step_is_named_with_the_first_line_of_its_error(lab_dir):
    broken = "channels: [conda-forge\n"
    assert ssh(lab_dir, "lab02", f"printf '{broken}' > /opt/conda/.condarc").returncode == 0
    # No env and no package cache: the install must download.
    assert ssh(lab_dir, "lab05", "rm -rf /opt/conda/envs/torch /opt/conda/pkgs").returncode == 0
    state = lab.mirror_state_dir(lab_dir)
    set_fault(state, "/anaconda/", "403")
    set_fault(state, "/fallback/anaconda/", "403")
    try:
        status, _, stderr = run_deploy(lab_dir, lab_dir, "--limit", "lab02", "--limit", "lab05")
    finally:
        set_fault(state, "/anaconda/", None)
        set_fault(state, "/fallback/anaconda/", None)
    assert status == 1
    hosts = {h["name"]: h for h in report(lab_dir)["hosts"]}
    assert hosts["lab02"]["step"] == "Point conda at the mirror"
    assert "/opt/conda/.condarc" in hosts["lab02"]["reason"]
    assert hosts["lab05"]["step"].startswith("Install torch into the conda env")
    assert hosts["lab05"]["reason"].split(":")[0] in {"CondaHTTPError", "CondaMultiError"}, hosts[
        "lab05"
    ]["reason"]
    assert "the deploy did not reach the probe" not in stderr
    assert "Failures by cause:" in stderr
    assert "lab02" in stderr.split("Failures by cause:")[1].split("Per host:")[0]
    # Fault gone, condarc fixed: the next run repairs both.
    assert ssh(lab_dir, "lab02", "rm /opt/conda/.condarc").returncode == 0
    status, results, _ = run_deploy(lab_dir, lab_dir, "--limit", "lab02", "--limit", "lab05")
    assert status == 0, results


def test_a_linked_condarc_is_updated_where_it_points_with_its_comments(lab_dir):
    """The condarc is a link to a file the lab shares: the link stays, the shared file gets the
    mirror (its comment kept), and the backup sits beside the file it backs up."""
    shared = "/etc/lab-shared.condarc"
    setup = (
        f"printf '# shared by the lab\\nenvs_dirs: [/data/envs]\\n' > {shared} && "
        f"rm -f /opt/conda/.condarc /opt/conda/.condarc.labtorch-backup && "
        f"ln -s {shared} /opt/conda/.condarc"
    )
    assert ssh(lab_dir, "lab04", setup).returncode == 0
    status, results, _ = run_deploy(lab_dir, lab_dir, "--limit", "lab04")
    assert status == 0, results
    assert ssh(lab_dir, "lab04", "test -L /opt/conda/.condarc").returncode == 0
    text = ssh(lab_dir, "lab04", f"cat {shared}").stdout.decode()
    assert text.startswith("# shared by the lab\n") and "conda-forge" in text
    backup = ssh(lab_dir, "lab04", f"cat {shared}.labtorch-backup").stdout.decode()
    assert backup == "# shared by the lab\nenvs_dirs: [/data/envs]\n"
    status, results, _ = run_deploy(lab_dir, lab_dir, "--limit", "lab04")
    assert status == 0 and not any(op["success"] for op in results["operations"])


def test_a_directory_where_pip_conf_belongs_fails_that_host_with_its_path(lab_dir):
    pip_conf = "/opt/labtorch/venvs/torch/pip.conf"
    assert ssh(lab_dir, "lab07", f"rm -f {pip_conf} && mkdir {pip_conf}").returncode == 0
    status, _, _ = run_deploy(lab_dir, lab_dir, "--limit", "lab07")
    assert status == 1
    record = next(h for h in report(lab_dir)["hosts"] if h["name"] == "lab07")
    assert record["step"] == "Point pip at the mirror"
    assert record["reason"].startswith(f"{pip_conf} is a directory, not a file")
    assert ssh(lab_dir, "lab07", f"rmdir {pip_conf}").returncode == 0
    status, _, _ = run_deploy(lab_dir, lab_dir, "--limit", "lab07")
    assert status == 0


LOCK = "/opt/conda/envs/torch.labtorch-lock"
# Every download of the first run is slow, wherever its lock file or solve sends it.
SLOW = ("/anaconda/", "/fallback/")


def test_two_deploys_at_once_the_second_waits_then_fails_naming_the_holder(lab_dir):
    """The first run holds lab05's env while it installs (slowly: the mirror delays packages);
    the second, started meanwhile, waits its bounded time, then fails that host naming the
    holder; the first converges, and lets the env go."""
    # torchaudio gone, and every package cache: the first run must download it, slowly.
    drift = "/opt/conda/bin/conda remove -n torch -y -q torchaudio"
    assert ssh(lab_dir, "lab05", f"{drift} && rm -rf /opt/conda/pkgs ~/.conda/pkgs").returncode == 0
    state = lab.mirror_state_dir(lab_dir)
    for prefix in SLOW:
        set_fault(state, prefix, "slow", delay_s=15.0)
    try:
        first = deploy_process(lab_dir, lab_dir, "--limit", "lab05")
        for _ in range(100):
            if ssh(lab_dir, "lab05", f"test -d {LOCK}").returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the first run never took the lock")
        second = subprocess.run(
            [PYINFRA, "inventories/sim.py", "deploys/pytorch.py", "-y", "--limit", "lab05",
             "--data", "torch_run_lock_wait=2"],
            cwd=REPO, env=lab_env(lab_dir, lab_dir / "second"),
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        first_status, _, first_err = finished(first, timeout_s=300)
    finally:
        for prefix in SLOW:
            set_fault(state, prefix, None)
    assert second.returncode == 1, second.stderr[-3000:]
    assert "another labtorch run holds lab05 since 20" in second.stderr
    second_record = json.loads((lab_dir / "second" / "report.json").read_text())["hosts"]
    held = next(h for h in second_record if h["name"] == "lab05")
    assert held["step"] == "Take the env" and held["reason"].startswith("another labtorch run")
    assert first_status == 0, first_err
    assert ssh(lab_dir, "lab05", f"test -e {LOCK}").returncode != 0


def test_a_lock_left_by_a_dead_run_of_this_controller_is_taken_over(lab_dir):
    owner = f"{socket.gethostname()} 999999 {int(time.time())}"
    setup = f"mkdir -p {LOCK} && echo '{owner}' > {LOCK}/owner && rm -rf /opt/conda/envs/torch"
    assert ssh(lab_dir, "lab05", setup).returncode == 0
    status, results, _ = run_deploy(lab_dir, lab_dir, "--limit", "lab05")
    assert status == 0, results
    assert ssh(lab_dir, "lab05", f"test -e {LOCK}").returncode != 0


def test_a_converged_host_takes_no_lock(lab_dir):
    """A run that changes nothing costs nothing more: no lock, the host state alone."""
    status, results, _ = run_deploy(lab_dir, lab_dir, "--limit", "lab05", "-v")
    assert status == 0
    names = {op["name"].split(" | ")[-1] for op in results["operations"]}
    assert "Take the env" not in names and "Let the env go" not in names
