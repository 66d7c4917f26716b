"""Issue 15 end to end, on a simulated lab of its own: Miniforge from the mirror on the host
without conda (lab09), and ``labtorch rollback`` of conda envs and venvs.

The tests run in order on one lab:

1. a corrupted installer (the mirror's file no longer has the published sha256) fails lab09
   alone, with the reason, and leaves no /opt/conda and nothing in /tmp;
2. the installer restored, the next converge installs Miniforge from the mirror (checksum
   first, then the installer), points its condarc at the mirror and creates the env, and a
   rerun changes nothing (one command, no request to the mirror);
3. release A (2.3.1 from the pytorch channel) on lab01, lab02 and lab09, then release B (2.7.1
   from conda-forge): each change recorded the env's state first; ``rollback --limit lab01
   --limit lab02`` puts those two back on A and the probe passes, lab09 stays on B; a second
   rollback returns them to B; a host whose env has no history fails alone;
4. a venv (lab01 on the pip route) goes back from cu128 to cu126 and forth again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import pytest
from labhelpers import REPO, must, running_lab, ssh
from labhelpers import deploy as run_deploy

from labtorch.cli.report import add_report_parser
from labtorch.cli.rollback import add_rollback_parser
from labtorch.rules.bootstrap import MINIFORGE_CONDARC
from labtorch_sim import lab, miniforge
from labtorch_sim.mirror import read_log

RC = '#!/bin/sh\necho "$$" >> "$HOME/.labtorch-test-sessions"\n'
SESSIONS = ".labtorch-test-sessions"
ENV = "/opt/conda/envs/torch"
VENV = "/opt/labtorch/venvs/torch"
RELEASE_A = ("--data", 'torch_release="2.3.1"', "--data", "torch_conda_channel=pytorch")
PIP = ("--data", "torch_installer=pip", "--data", 'torch_release="2.9.1"')
# A venv goes back and forth installed by the pip route's own solve and from a lock (pip's
# direct references): either way the env's history has each file's sha256, from the install
# report labtorch asks pip for.
NO_LOCK = ("--data", "torch_lock=off")
LIMIT = ("--limit", "lab01", "--limit", "lab02", "--limit", "lab09")


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory, "e2e-rollback") as state_dir:
        for host in lab.status(state_dir).hosts:
            rc = state_dir / "hosts" / host.name / "root" / ".ssh" / "rc"
            rc.parent.mkdir(exist_ok=True)
            rc.write_text(RC)
        yield state_dir


@pytest.fixture
def in_lab(lab_dir, monkeypatch) -> None:
    """The CLI runs pyinfra from the repository, on this lab's inventory."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("LABTORCH_SIM_DIR", str(lab_dir))


def deploy(lab_dir: Path, tmp_path: Path, *extra: str) -> tuple[int, dict, dict]:
    """The deploy on this lab: exit status, pyinfra's results, the report by host."""
    report_dir = tmp_path / "report"
    code, results, stderr = run_deploy(lab_dir, report_dir, *extra)
    assert results is not None, stderr
    report = json.loads((report_dir / "report.json").read_text())
    return code, results, {host["name"]: host for host in report["hosts"]}


def changed(results: dict, host: str) -> list[str]:
    return [op["name"].split(" | ")[1] for op in results["operations"] if host in op["success"]]


def rollback(*argv: str, tmp_path: Path) -> tuple[int, dict]:
    """``labtorch rollback ARGV`` as the CLI registers it: exit status, results by host."""
    parser = argparse.ArgumentParser(prog="labtorch")
    add_rollback_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "rollback.json"
    args = parser.parse_args(["rollback", "inventories/sim.py", *argv, "--json", str(out)])
    code = args.handler(args)
    return code, {host["name"]: host for host in json.loads(out.read_text())["hosts"]}


def torch_build(lab_dir: Path, host: str, prefix: str = ENV) -> str:
    """The env's torch, as conda lists it (name version build) or pip (name==version)."""
    if prefix == ENV:
        listing = must(ssh(lab_dir, host, f"/opt/conda/bin/conda list -p {prefix} --json"))
        torch = next(p for p in json.loads(listing) if p["name"] == "pytorch")
        return f"{torch['version']} {torch['build_string']}"
    listing = must(ssh(lab_dir, host, f"{prefix}/bin/python -m pip list --format json"))
    return next(p["version"] for p in json.loads(listing) if p["name"] == "torch")


def history(lab_dir: Path, host: str, prefix: str = ENV) -> list[dict]:
    script = f"for f in {prefix}/.labtorch-history/*.json; do [ -f $f ] && cat $f; done; true"
    return [json.loads(line) for line in must(ssh(lab_dir, host, script)).splitlines()]


def requests_since(lab_dir: Path, start: int) -> list[str]:
    log = read_log(lab.mirror_state_dir(lab_dir))
    return [f"{entry['status']} {entry['path']}" for entry in log[start:]]


def sessions(lab_dir: Path, host: str) -> int:
    return len(must(ssh(lab_dir, host, f"cat $HOME/{SESSIONS} 2>/dev/null; true")).split())


# ---- Miniforge from the mirror ----------------------------------------------------------------


def test_a_corrupted_installer_fails_that_host_and_leaves_no_conda(lab_dir, tmp_path):
    release = miniforge.release_dir(lab_dir / "mirror" / "root")
    installer = release / miniforge.UNVERSIONED
    saved = tmp_path / "saved.sh"
    shutil.copy2(installer, saved)
    try:
        with installer.open("ab") as stream:
            stream.write(b"# tampered with\n")
        code, results, report = deploy(lab_dir, tmp_path, "--limit", "lab09", "--limit", "lab01")
    finally:
        shutil.copy2(saved, installer)
    assert code == 1
    assert results["failed_hosts"] == ["lab09"]
    assert report["lab01"]["status"] == "ok"
    failed = report["lab09"]
    assert failed["status"] == "failed" and failed["step"] == "Install Miniforge from the mirror"
    # Both mirrors (the lab's and its fallback) serve the tampered file: each is named.
    assert failed["reason"].startswith(
        "no Miniforge installer passed its checksum, nothing installed; "
    )
    assert failed["reason"].count("is not the published") == 2
    assert ssh(lab_dir, "lab09", "test -e /opt/conda").returncode == 1
    temp = must(ssh(lab_dir, "lab09", "ls -a /tmp")).split()
    assert not [name for name in temp if name.startswith("labtorch-miniforge")]


def test_the_first_converge_installs_miniforge_from_the_mirror(lab_dir, tmp_path):
    start = len(read_log(lab.mirror_state_dir(lab_dir)))
    code, results, report = deploy(lab_dir, tmp_path, "--limit", "lab09")
    assert code == 0, report["lab09"]
    assert "Install Miniforge from the mirror" in changed(results, "lab09")
    assert report["lab09"]["status"] == "ok"
    assert report["lab09"]["installed"]["torch"] == "2.7.1"
    fetched = requests_since(lab_dir, start)
    # The checksum first, then the installer, from the lab's mirror (not its fallback).
    tree = f"/{miniforge.TREE}/{miniforge.LATEST}/{miniforge.UNVERSIONED}"
    assert fetched[:2] == [f"200 {tree}.sha256", f"200 {tree}"]
    assert all(line.startswith("200 /") and "/fallback/" not in line for line in fetched)
    # Miniforge's own condarc is kept once as the backup; labtorch's keys are in the file.
    backup = must(ssh(lab_dir, "lab09", "cat /opt/conda/.condarc.labtorch-backup"))
    assert backup == MINIFORGE_CONDARC
    condarc = must(ssh(lab_dir, "lab09", "cat /opt/conda/.condarc"))
    assert "custom_channels:" in condarc and "/anaconda/cloud" in condarc
    # The env was created, not changed: nothing to record yet.
    assert history(lab_dir, "lab09") == []


def test_the_rerun_changes_nothing(lab_dir, tmp_path):
    start, seen = len(read_log(lab.mirror_state_dir(lab_dir))), sessions(lab_dir, "lab09")
    code, results, report = deploy(lab_dir, tmp_path, "--limit", "lab09")
    assert code == 0 and report["lab09"]["status"] == "ok"
    assert changed(results, "lab09") == []
    assert requests_since(lab_dir, start) == []
    # One command: the snapshot, which now finds /opt/conda/bin/conda (and this count's own).
    assert sessions(lab_dir, "lab09") - seen == 2


# ---- conda envs: A, B, rollback, rollback again -----------------------------------------------


@pytest.fixture(scope="module")
def on_b(lab_dir, tmp_path_factory) -> dict:
    """lab01, lab02 and lab09 deployed with release A, then with release B; the report of B."""
    tmp_path = tmp_path_factory.mktemp("a-then-b")
    code, _, report = deploy(lab_dir, tmp_path, *LIMIT, *RELEASE_A)
    assert code == 0, {name: host["reason"] for name, host in report.items()}
    for host in ("lab01", "lab02", "lab09"):
        assert report[host]["installed"]["torch"] == "2.3.1", host
    code, results, report = deploy(lab_dir, tmp_path, *LIMIT)
    assert code == 0, {name: host["reason"] for name, host in report.items()}
    recorded = next(op for op in results["operations"] if "Record" in op["name"])
    assert sorted(recorded["success"]) == ["lab01", "lab02", "lab09"]
    return report


def test_each_change_recorded_the_env_first(lab_dir, on_b):
    for host in ("lab01", "lab02", "lab09"):
        assert on_b[host]["installed"]["torch"] == "2.7.1"
        states = history(lab_dir, host)
        last = states[-1]
        assert last["torch"] == "2.3.1" and last["kind"] == "conda"
        assert last["reason"].startswith("before the deploy of torch 2.7.1")
        assert last["run"] and last["time"].endswith("Z")
        assert isinstance(last["conda_revision"], int)
        pytorch = next(p for p in last["packages"] if p["name"] == "pytorch")
        assert pytorch["build"].startswith("py3.11_cuda12.1")
        # Hashed as conda lists it: md5, and sha256 where conda-meta has no md5 (an env
        # installed from an explicit file with sha256s).
        assert len(pytorch["md5"] or "") == 32 or len(pytorch["sha256"] or "") == 64, pytorch
        assert pytorch["url"].endswith(f"{pytorch['name']}-2.3.1-{pytorch['build']}.tar.bz2")


def test_rollback_puts_two_hosts_back_on_a(lab_dir, on_b, tmp_path, in_lab):
    before = torch_build(lab_dir, "lab09")
    code, results = rollback("--limit", "lab01", "--limit", "lab02", tmp_path=tmp_path)
    assert code == 0, results
    assert sorted(results) == ["lab01", "lab02"]
    for host in ("lab01", "lab02"):
        result = results[host]
        assert result["status"] == "restored", result
        assert (result["from"], result["to"]) == ("2.7.1", "2.3.1")
        assert result["how"].startswith("conda install --revision ")
        assert result["probe"]["passed"], result["probe"]
        assert torch_build(lab_dir, host).startswith("2.3.1 py3.11_cuda12.1")
        # The state it left is recorded: the rollback can be undone.
        assert history(lab_dir, host)[-1]["torch"] == "2.7.1"
        assert result["recorded"] == history(lab_dir, host)[-1]["id"]
    assert torch_build(lab_dir, "lab09") == before


def test_a_second_rollback_returns_to_b(lab_dir, on_b, tmp_path, in_lab):
    code, results = rollback("--limit", "lab01", "--limit", "lab02", tmp_path=tmp_path)
    assert code == 0, results
    for host in ("lab01", "lab02"):
        assert results[host]["status"] == "restored", results[host]
        assert (results[host]["from"], results[host]["to"]) == ("2.3.1", "2.7.1")
        assert results[host]["probe"]["passed"]
        assert torch_build(lab_dir, host).startswith("2.7.1 cuda12")
    # A dry run says what it would put back and changes nothing (lab02's state 1 is A: its
    # env was created by A, and B recorded it; lab01's state 1 is B, from the first test).
    code, dry = rollback(
        "--limit", "lab02", "--limit", "lab01", "--to", "1", "--dry", tmp_path=tmp_path
    )
    assert code == 0, dry
    assert (dry["lab02"]["status"], dry["lab02"]["to"]) == ("would restore", "2.3.1")
    assert (dry["lab01"]["status"], dry["lab01"]["to"]) == ("unchanged", "2.7.1")
    assert torch_build(lab_dir, "lab02").startswith("2.7.1 cuda12")


def test_a_host_without_history_fails_alone(lab_dir, on_b, tmp_path, in_lab):
    code, _, report = deploy(lab_dir, tmp_path, "--limit", "lab05")
    assert code == 0 and report["lab05"]["status"] == "ok"
    code, results = rollback("--limit", "lab05", "--limit", "lab09", tmp_path=tmp_path)
    assert code == 1
    assert results["lab05"]["status"] == "failed"
    assert results["lab05"]["reason"].startswith(f"no recorded state of {ENV}: ")
    assert results["lab09"]["status"] == "restored" and results["lab09"]["probe"]["passed"]
    assert torch_build(lab_dir, "lab09").startswith("2.3.1 py3.11_cuda12.1")
    # No such state: the host fails with what is kept.
    code, results = rollback("--limit", "lab09", "--to", "99", tmp_path=tmp_path)
    assert code == 1 and "no state 99 of" in results["lab09"]["reason"]


def test_report_shows_each_envs_history(lab_dir, on_b, tmp_path, in_lab):
    parser = argparse.ArgumentParser(prog="labtorch")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "audit.json"
    args = parser.parse_args(
        ["report", "inventories/sim.py", "--limit", "lab01", "--json", str(out)]
    )
    args.handler(args)
    envs = json.loads(out.read_text())["hosts"][0]["envs"]
    conda = next(env for env in envs if env["prefix"] == ENV)
    assert conda["history"] == len(history(lab_dir, "lab01")) >= 3


# ---- a venv -----------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", [NO_LOCK, ()], ids=["solved-on-the-host", "from-a-lock"])
def test_a_venv_goes_back_and_forth(lab_dir, tmp_path, in_lab, lock):
    for variant in ("cu126", "cu128"):
        code, _, report = deploy(
            lab_dir,
            tmp_path,
            "--limit",
            "lab01",
            *PIP,
            *lock,
            "--data",
            f"torch_variant={variant}",
        )
        assert code == 0 and report["lab01"]["status"] == "ok", report["lab01"]
    assert torch_build(lab_dir, "lab01", VENV) == "2.9.1"
    recorded = history(lab_dir, "lab01", VENV)[-1]
    torch = next(p for p in recorded["packages"] if p["name"] == "torch")
    assert torch["version"] == "2.9.1+cu126" and len(torch["sha256"]) == 64
    assert "/pytorch-wheels/cu126/" in torch["url"]
    pip = ("--data", "torch_installer=pip")
    code, results = rollback("--limit", "lab01", *pip, tmp_path=tmp_path)
    assert code == 0, results
    result = results["lab01"]
    assert result["status"] == "restored" and result["probe"]["passed"], result
    assert result["how"].startswith("the recorded hash-checked requirements")
    assert torch_build(lab_dir, "lab01", VENV) == "2.9.1+cu126"
    code, results = rollback("--limit", "lab01", *pip, tmp_path=tmp_path)
    assert code == 0 and results["lab01"]["status"] == "restored"
    assert torch_build(lab_dir, "lab01", VENV) == "2.9.1"
    # The conda env beside it was not touched.
    assert torch_build(lab_dir, "lab01").startswith("2.7.1 cuda12")
    assert os.environ.get("LABTORCH_SIM_DIR") == str(lab_dir)
