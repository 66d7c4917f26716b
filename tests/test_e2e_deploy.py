"""The deploy end to end: the real pyinfra CLI over real SSH against the simulated lab.

One lab of the 9 default profiles is brought up for the module; the tests run in order: the
first run converges every host the rules can plan and fails the others alone; the second run
changes nothing; each drift, made on one host, is repaired on that host alone; the user's own
condarc keys and other envs survive; every download went to the lab's mirror.

"Changes nothing" is checked strictly (``assert_noop_rerun``): no operation changed a host, the
mirror saw no request, every file labtorch owns on every host (condarc, pip.conf, their backups,
the probe's result, pip's install report, the env's package records) is byte-identical and not
rewritten (same inode and mtime), and each host ran exactly the commands it must: the snapshot
alone where it converged, the snapshot and its failure where it fails. Commands are counted twice:
by pyinfra's SSH connector (bench/count_commands.py, which also says what each was) and by the
host, whose ``~/.ssh/rc`` logs every SSH session that runs a command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from labhelpers import (
    REPO,
    env_urls,
    lab_env,
    mirror_url,
    must,
    not_from_the_mirror,
    running_lab,
    ssh,
)
from labhelpers import deploy as run_deploy

from labtorch_sim import lab
from labtorch_sim.mirror import read_log, set_fault

# lab09 has no conda: the first converge gives it Miniforge from the lab's mirror.
CONDA_HOSTS = ["lab01", "lab02", "lab03", "lab04", "lab05", "lab06", "lab09"]
USER_CONDARC = "envs_dirs: [/data/envs]\ncustom_channels:\n  bioconda: https://bio.example/cloud\n"
COUNTER = REPO / "bench" / "count_commands.py"
# Each SSH session that runs a command appends a line on the host (sshd runs ~/.ssh/rc first).
RC = '#!/bin/sh\necho "$$" >> "$HOME/.labtorch-test-sessions"\n'
SESSIONS = ".labtorch-test-sessions"
# What labtorch owns on a host, wherever a route puts it (conda root, conda envs, venvs, user and
# global pip.conf), and what it must not touch either (other envs' records): hashed over SSH.
OWNED = (
    "/opt/conda/.condarc*",
    "/root/.condarc*",
    "/etc/pip.conf*",
    "/root/.config/pip/pip.conf*",
    "/opt/conda/envs/*/pip.conf*",
    "/opt/conda/envs/*/.labtorch-probe.json",
    "/opt/conda/envs/*/labtorch-pip-report.json",
    "/opt/conda/envs/*/conda-meta/*.json",
    "/opt/conda/envs/*/lib/python3*/site-packages/*.dist-info/RECORD",
    "/opt/labtorch/venvs/*/pip.conf*",
    "/opt/labtorch/venvs/*/.labtorch-probe.json",
    "/opt/labtorch/venvs/*/labtorch-pip-report.json",
    "/opt/labtorch/venvs/*/pyvenv.cfg",
    "/opt/labtorch/venvs/*/lib/python3*/site-packages/*.dist-info/RECORD",
)
_HASH_OWNED = (
    f'for f in {" ".join(OWNED)}; do [ -f "$f" ] || continue; '
    'printf "%s %s %s\\n" "$(sha256sum < "$f" | cut -c1-64)" "$(stat -c "%i:%.9Y" "$f")" "$f"; '
    "done; true"
)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory, "e2e-lab") as state_dir:
        # What a user had before labtorch: their own condarc keys, and an env of their own.
        must(ssh(state_dir, "lab02", f"printf '{USER_CONDARC}' > /opt/conda/.condarc"))
        must(ssh(state_dir, "lab03", "/opt/conda/bin/conda create -n mine -y -q python=3.11 "
                                     "--override-channels -c " + mirror_url(state_dir) +
                                     "/anaconda/pkgs/main"))  # fmt: skip
        for host in lab.status(state_dir).hosts:
            rc = state_dir / "hosts" / host.name / "root" / ".ssh" / "rc"
            rc.parent.mkdir(exist_ok=True)
            rc.write_text(RC)
        yield state_dir


def deploy(lab_dir: Path, *extra: str) -> tuple[int, dict | None, str]:
    return run_deploy(lab_dir, lab_dir, *extra)


def changed_hosts(results: dict) -> set[str]:
    return {name for op in results["operations"] for name in op["success"]}


def by_op(results: dict, field: str) -> dict[str, list[str]]:
    return {op["name"].split(" | ")[1]: sorted(op[field]) for op in results["operations"]}


def hosts(lab_dir: Path) -> list[str]:
    return [host.name for host in lab.status(lab_dir).hosts]


def owned_files(lab_dir: Path, host: str) -> dict[str, tuple[str, str]]:
    """Every file labtorch owns on ``host``: path -> (sha256, "inode:mtime"), read over SSH."""
    files = {}
    for line in must(ssh(lab_dir, host, _HASH_OWNED)).splitlines():
        digest, identity, path = line.split(" ", 2)
        files[path] = (digest, identity)
    return files


def snapshot(lab_dir: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """The owned files of every host, read in parallel."""
    names = hosts(lab_dir)
    with ThreadPoolExecutor(len(names)) as pool:
        return dict(zip(names, pool.map(lambda h: owned_files(lab_dir, h), names), strict=True))


def sessions(lab_dir: Path) -> dict[str, int]:
    """How many SSH sessions that ran a command each host has seen (its ~/.ssh/rc log)."""
    counts = {}
    for name in hosts(lab_dir):
        log = lab_dir / "hosts" / name / "root" / SESSIONS
        counts[name] = len(log.read_text().splitlines()) if log.exists() else 0
    return counts


def counted_deploy(lab_dir: Path, tmp_path: Path, *extra: str) -> tuple[int, dict, dict, str]:
    """The real deploy, run through bench/count_commands.py: exit status, pyinfra's --json
    results, per host what pyinfra's SSH connector ran (``commands``, ``command_lines``,
    ``uploads``, ...), and stderr."""
    counts = tmp_path / "counts.json"
    done = subprocess.run(
        [sys.executable, str(COUNTER), "--out", str(counts), "--", *PYINFRA_ARGS, *extra],
        cwd=REPO,
        env=lab_env(lab_dir),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    counted = json.loads(counts.read_text())
    return done.returncode, json.loads(done.stdout)["results"], counted, done.stderr


def changed_files(before: dict, after: dict) -> dict[str, list[str]]:
    """Per host, the owned files that appeared, vanished, changed bytes or were rewritten."""
    changed = {}
    for host in sorted(set(before) | set(after)):
        old, new = before.get(host, {}), after.get(host, {})
        paths = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
        if paths:
            changed[host] = paths
    return changed


PYINFRA_ARGS = ("inventories/sim.py", "deploys/pytorch.py", "-y", "--json")
SNAPSHOT_COMMAND = "echo @@labtorch system; uname -s"


def assert_noop_rerun(lab_dir: Path, tmp_path: Path, *extra: str) -> dict:
    """A rerun that must change nothing, checked strictly; its --json results."""
    state = lab.mirror_state_dir(lab_dir)
    requests, files, seen = len(read_log(state)), snapshot(lab_dir), sessions(lab_dir)
    _, results, counts, _ = counted_deploy(lab_dir, tmp_path, *extra)
    ran = {h: n - seen[h] for h, n in sessions(lab_dir).items() if n != seen[h]}
    new_requests = [f"{e['method']} {e['path']}" for e in read_log(state)[requests:]]
    assert changed_hosts(results) == set(), by_op(results, "success")
    assert new_requests == [], "the rerun fetched from the mirror"
    assert changed_files(files, snapshot(lab_dir)) == {}, "the rerun changed owned files"
    failed = set(results["failed_hosts"])
    targeted = counts["hosts"]
    assert targeted, "no host was targeted"
    for host, count in targeted.items():
        lines = count["command_lines"]
        assert (count["uploads"], count["downloads"]) == (0, 0), host
        assert lines[:1] == [SNAPSHOT_COMMAND], (host, lines)
        if host in failed:
            # The snapshot, then the command that prints the reason and fails the host; the
            # probe itself is not run again (its last result is judged).
            assert len(lines) == 2 and lines[1].startswith("echo 'labtorch: "), (host, lines)
        else:
            assert len(lines) == 1, (host, lines)
    assert ran == {host: count["commands"] for host, count in targeted.items()}
    return results


# lab08's driver is not loaded: no plan. lab06 (A10G, driver 515, CUDA 11.7) is on the pytorch
# channel, whose builds of 2.3.1 need CUDA 11.8 at least: under the default driver policy
# ("auto") it gets cu118 through CUDA minor-version compatibility (11.x on a driver >= 450.80.02;
# the build has sm_86 SASS for the A10G), with a warning that names the driver for full support;
# under "strict" it gets the CPU build, which the probe fails (the last test). lab03 (Volta,
# CUDA 12.2) is on the pytorch channel too, and gets cu121.
FAILED = ["lab08"]
MINOR_COMPAT_WARNING = (
    "driver 515.105.01 (CUDA 11.7) runs cu118 only through CUDA minor-version compatibility, "
    "with a limited feature set; for full support install driver 520.61.05 or newer (CUDA 11.8)"
)


def test_first_run_converges_every_plannable_host(lab_dir):
    status, results, stderr = deploy(lab_dir)
    assert status == 1
    assert sorted(results["failed_hosts"]) == FAILED
    assert "driver-not-loaded" in stderr and "modprobe nvidia" in stderr
    report = {h["name"]: h for h in json.loads((lab_dir / "report.json").read_text())["hosts"]}
    assert report["lab06"]["status"] == "ok"
    assert report["lab06"]["plan"]["variant"] == "cu118"
    assert report["lab06"]["plan"]["warnings"] == [MINOR_COMPAT_WARNING]
    assert not [name for name, r in report.items() if name != "lab06" and r["plan"]
                and "minor-version" in " ".join(r["plan"]["warnings"])]  # fmt: skip
    changes = by_op(results, "success")
    assert changes["Install Miniforge from the mirror"] == ["lab09"]
    assert changes["Install torch into the conda env"] == CONDA_HOSTS
    assert changes["Install torch into the venv"] == ["lab07"]
    assert changes["Point conda at the mirror"] == CONDA_HOSTS
    assert by_op(results, "error")["Plan PyTorch"] == ["lab08"]
    assert by_op(results, "error")["Prove torch works"] == []
    assert by_op(results, "no_change")["Prove torch works"] == [
        "lab01",
        "lab02",
        "lab03",
        "lab04",
        "lab05",
        "lab06",
        "lab07",
        "lab09",
    ]


@pytest.mark.parametrize(
    ("host", "python", "expected"),
    [
        ("lab01", "/opt/conda/envs/torch/bin/python", "2.7.1 12.6 True"),  # H100, driver 570
        ("lab04", "/opt/conda/envs/torch/bin/python", "2.7.1 12.6 True"),  # Pascal gets cu126
        ("lab03", "/opt/conda/envs/torch/bin/python", "2.3.1 12.1 True"),  # pytorch channel
        ("lab06", "/opt/conda/envs/torch/bin/python", "2.3.1 11.8 True"),  # minor-version compat
        ("lab07", "/opt/labtorch/venvs/torch/bin/python", "2.9.1+cpu None False"),
    ],
)
def test_each_host_got_its_build(lab_dir, host, python, expected):
    probe = "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"
    assert must(ssh(lab_dir, host, f"{python} -c '{probe}'")).strip() == expected


def test_second_run_changes_nothing(lab_dir, tmp_path):
    results = assert_noop_rerun(lab_dir, tmp_path)
    assert sorted(results["failed_hosts"]) == FAILED
    # Not vacuous: every host that converged holds its condarc or pip.conf and the probe's result.
    files = snapshot(lab_dir)
    for host in sorted(set(hosts(lab_dir)) - set(FAILED)):
        names = {path.rsplit("/", 1)[-1] for path in files[host]}
        assert {"pip.conf", ".labtorch-probe.json"} <= names, (host, sorted(names))
    for host in CONDA_HOSTS:
        assert "/opt/conda/.condarc" in files[host], host


def test_user_condarc_keys_and_other_envs_survive(lab_dir):
    condarc = yaml.safe_load(must(ssh(lab_dir, "lab02", "cat /opt/conda/.condarc")))
    assert condarc["envs_dirs"] == ["/data/envs"]
    assert condarc["custom_channels"]["bioconda"] == "https://bio.example/cloud"
    assert condarc["channels"] == ["conda-forge"]
    backup = must(ssh(lab_dir, "lab02", "cat /opt/conda/.condarc.labtorch-backup"))
    assert backup == USER_CONDARC
    envs = json.loads(must(ssh(lab_dir, "lab03", "/opt/conda/bin/conda env list --json")))
    assert "/opt/conda/envs/mine" in envs["envs"]
    mine = json.loads(must(ssh(lab_dir, "lab03", "/opt/conda/bin/conda list -n mine --json")))
    assert "pytorch" not in {package["name"] for package in mine}


def env_records(files: dict[str, tuple[str, str]]) -> list[str]:
    """The env's package records (conda-meta files, dist-info directories) among owned files:
    which builds are installed, whatever their install-time content."""
    return sorted(
        path.removesuffix("/RECORD")
        for path in files
        if "/conda-meta/" in path or path.endswith(".dist-info/RECORD")
    )


def config_bytes(files: dict[str, tuple[str, str]]) -> dict[str, str]:
    """The config files labtorch writes (condarc, pip.conf, their backups) -> their sha256."""
    return {
        path: digest
        for path, (digest, _) in files.items()
        if path.rsplit("/", 1)[-1].startswith((".condarc", "pip.conf"))
    }


BACKUP = ".labtorch-backup"


def live(configs: dict[str, str]) -> dict[str, str]:
    """The config files in use, without labtorch's backups of them."""
    return {path: digest for path, digest in configs.items() if not path.endswith(BACKUP)}


OTHER_LABEL = (
    "/opt/labtorch/venvs/torch/bin/python -m pip install -q --no-deps --force-reinstall "
    "--no-index --find-links {mirror}/pytorch-wheels/cu126/ "
    "torch==2.9.1+cu126 torchvision==0.24.1+cu126 torchaudio==2.9.1+cu126"
)
DRIFTS = {
    "condarc edited": ("lab01", "sed -i 's/conda-forge$/defaults/' /opt/conda/.condarc"),
    "channel removed": (
        "lab02",
        "sed -i '/conda-forge: /d' /opt/conda/.condarc",
    ),
    "torch replaced by its CPU build": (
        "lab04",
        "CONDA_OVERRIDE_CUDA= /opt/conda/bin/conda install -n torch -y -q --override-channels "
        "-c conda-forge 'pytorch=2.7.1=cpu_*'",
    ),
    "package removed": ("lab05", "/opt/conda/bin/conda remove -n torch -y -q torchaudio"),
    "env deleted": ("lab06", "/opt/conda/bin/conda remove -n torch --all -y -q"),
    "pip index changed": (
        "lab07",
        "sed -i 's|index-url = .*|index-url = https://pypi.org/simple|' "
        "/opt/labtorch/venvs/torch/pip.conf",
    ),
    # The +cpu build replaced by another label of the same version: ==2.9.1 would keep it.
    "venv torch replaced by another label": ("lab07", OTHER_LABEL),
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_drift_is_repaired_on_that_host_alone(lab_dir, tmp_path, drift):
    """The drift is made, seen, and gone after one run: the drifted host is back to what it was
    (the same config bytes, the same package records, the probe passing as before), and every
    other host's owned files are untouched. The run after that changes nothing."""
    host, command = DRIFTS[drift]
    before = snapshot(lab_dir)  # the previous test ended on a strict no-op rerun
    must(ssh(lab_dir, host, command.format(mirror=mirror_url(lab_dir))))
    drifted = owned_files(lab_dir, host)
    assert (config_bytes(drifted), env_records(drifted)) != (
        config_bytes(before[host]),
        env_records(before[host]),
    ), f"{drift}: the drift changed nothing labtorch looks at"
    _, results, _ = deploy(lab_dir)
    assert changed_hosts(results) == {host}
    assert sorted(results["failed_hosts"]) == FAILED
    after = snapshot(lab_dir)
    configs = config_bytes(after[host])
    assert live(configs) == live(config_bytes(before[host])), f"{drift}: configs differ"
    for path in set(configs) - set(before[host]):
        # The one-time backup of a file labtorch replaced holds what it replaced: the drift.
        assert path.endswith(BACKUP) and configs[path] == drifted[path.removesuffix(BACKUP)][0]
    assert env_records(after[host]) == env_records(before[host]), f"{drift}: packages differ"
    assert changed_files(before, after).keys() <= {host}, "another host's files changed"
    assert_noop_rerun(lab_dir, tmp_path)


def test_cpu_drift_repair_brought_back_the_cuda_build(lab_dir):
    probe = "import torch; print(torch.version.cuda, torch.cuda.is_available())"
    python = "/opt/conda/envs/torch/bin/python"
    assert must(ssh(lab_dir, "lab04", f"{python} -c '{probe}'")).strip() == "12.6 True"


def test_label_drift_repair_brought_back_the_cpu_label(lab_dir):
    version = "import torch, torchvision; print(torch.__version__, torchvision.__version__)"
    python = "/opt/labtorch/venvs/torch/bin/python"
    assert must(ssh(lab_dir, "lab07", f"{python} -c '{version}'")).split() == [
        "2.9.1+cpu",
        "0.24.1+cpu",
    ]


def conda_meta_url(lab_dir: Path, host: str, package: str) -> str:
    meta = must(ssh(lab_dir, host, f"cat /opt/conda/envs/torch/conda-meta/{package}-*.json"))
    return json.loads(meta)["url"]


def test_torch_from_elsewhere_is_reinstalled_from_the_mirror_on_that_host_alone(lab_dir, tmp_path):
    """An env whose torch came from an upstream channel (its conda-meta says so) is reinstalled
    from the mirror, and the probe passes; nothing else changes."""
    upstream = "https://conda.anaconda.org/conda-forge/linux-64/"
    record = "/opt/conda/envs/torch/conda-meta/pytorch-2.7.1-*.json"
    rewrite = (
        f"import glob, json; p = glob.glob('{record}')[0]; r = json.load(open(p)); "
        f"r['url'] = '{upstream}' + r['fn']; r['channel'] = '{upstream.rsplit('/', 2)[0]}'; "
        "json.dump(r, open(p, 'w'))"
    )
    must(ssh(lab_dir, "lab05", f'python3 -c "{rewrite}"'))
    assert conda_meta_url(lab_dir, "lab05", "pytorch").startswith(upstream)
    _, results, _ = deploy(lab_dir)
    assert changed_hosts(results) == {"lab05"}
    assert sorted(results["failed_hosts"]) == FAILED
    assert conda_meta_url(lab_dir, "lab05", "pytorch").startswith(mirror_url(lab_dir) + "/")
    assert_noop_rerun(lab_dir, tmp_path)


def test_a_directory_that_is_not_an_env_is_moved_aside_and_the_env_created(lab_dir, tmp_path):
    """An interrupted create (or a user) left a directory without conda-meta at the env's path:
    conda would answer `install` with "Not a conda environment" forever. It is moved aside,
    with everything in it, and the env created."""
    must(ssh(lab_dir, "lab05", "/opt/conda/bin/conda remove -n torch --all -y -q && "
                               "mkdir -p /opt/conda/envs/torch/work && "
                               "echo keep > /opt/conda/envs/torch/work/notes.txt"))  # fmt: skip
    _, results, _ = deploy(lab_dir)
    assert changed_hosts(results) == {"lab05"}
    assert sorted(results["failed_hosts"]) == FAILED
    kept = "/opt/conda/envs/torch.labtorch-aside/work/notes.txt"
    assert must(ssh(lab_dir, "lab05", f"cat {kept}")) == "keep\n"
    assert conda_meta_url(lab_dir, "lab05", "pytorch").startswith(mirror_url(lab_dir) + "/")
    assert_noop_rerun(lab_dir, tmp_path)


PIP_GPU = ("--limit", "lab01", "--data", "torch_installer=pip", "--data", "torch_release=2.9.1")
VENV_PYTHON = "/opt/labtorch/venvs/torch/bin/python"


def test_pip_gpu_host_label_swap_converges(lab_dir, tmp_path):
    """The PyPI default build (cu128 for 2.9.1) is pinned without a label, which an installed
    2.9.1+cpu satisfies under PEP 440: the repair must take the CPU build out, or pip keeps it
    and the host never converges."""
    status, results, _ = deploy(lab_dir, *PIP_GPU)
    assert status == 0, results
    version = "import torch; print(torch.__version__, torch.version.cuda)"
    assert must(ssh(lab_dir, "lab01", f"{VENV_PYTHON} -c '{version}'")).strip() == "2.9.1 12.8"
    wheels = mirror_url(lab_dir) + "/pytorch-wheels/cpu/"
    must(ssh(lab_dir, "lab01", f"{VENV_PYTHON} -m pip install -q --no-deps --force-reinstall "
                               f"--no-index --find-links {wheels} torch==2.9.1+cpu"))  # fmt: skip
    assert "2.9.1+cpu" in must(ssh(lab_dir, "lab01", f"{VENV_PYTHON} -c '{version}'"))
    status, results, _ = deploy(lab_dir, *PIP_GPU)
    assert status == 0
    assert changed_hosts(results) == {"lab01"}
    assert must(ssh(lab_dir, "lab01", f"{VENV_PYTHON} -c '{version}'")).strip() == "2.9.1 12.8"
    assert assert_noop_rerun(lab_dir, tmp_path, *PIP_GPU)["failed_hosts"] == []


def test_a_blocked_mirror_falls_back_to_the_next_with_the_same_pins(lab_dir, tmp_path):
    """The host's own solve (torch_lock = "off"); with locks: test_e2e_locks."""
    state = lab.mirror_state_dir(lab_dir)
    must(ssh(lab_dir, "lab01", "/opt/conda/bin/conda remove -n torch --all -y -q"))
    start = len(read_log(state))
    set_fault(state, "/anaconda/", "403")
    try:
        _, results, _ = deploy(lab_dir, "--data", "torch_lock=off")
    finally:
        set_fault(state, "/anaconda/", None)
    assert changed_hosts(results) == {"lab01"}
    assert sorted(results["failed_hosts"]) == FAILED
    log = read_log(state)[start:]
    assert {e["status"] for e in log if e["path"].startswith("/anaconda/")} == {403}
    # The package cache still holds the tarballs: the fallback answers the solve's repodata.
    answered = [e["path"] for e in log if e["status"] == 200]
    assert "/fallback/anaconda/cloud/conda-forge/linux-64/repodata.json" in answered
    meta = must(ssh(lab_dir, "lab01", "cat /opt/conda/envs/torch/conda-meta/pytorch-2.7.1-*.json"))
    assert "/fallback/anaconda/cloud/conda-forge/" in json.loads(meta)["url"]
    # The fallback is one of the mirrors the probe accepts, on this run and the next.
    assert sorted(assert_noop_rerun(lab_dir, tmp_path)["failed_hosts"]) == FAILED


def test_every_download_went_to_the_mirror(lab_dir):
    """Every package of every env on every host names the mirror (or its fallback) as where it
    came from; and it could not have come from anywhere else unseen: each host's network reaches
    the mirror only (tests/test_e2e_mirror_only.py)."""
    log = read_log(lab.mirror_state_dir(lab_dir))
    downloads = [entry["path"] for entry in log if entry["path"].endswith((".tar.bz2", ".whl"))]
    assert any("/anaconda/cloud/conda-forge/linux-64/pytorch-2.7.1-cuda126" in p for p in downloads)
    assert any(p.startswith("/pytorch-wheels/cpu/torch-2.9.1") for p in downloads)
    for host in hosts(lab_dir):
        assert env_urls(lab_dir, host) or host in FAILED, f"{host}: no env records"
    assert not_from_the_mirror(lab_dir, hosts(lab_dir)) == {}


def test_a_conda_host_without_conda_fails_alone_with_what_to_do(lab_dir, tmp_path):
    """lab07 has no conda: asked to install with conda, with the Miniforge bootstrap off, it
    fails after its snapshot, saying where conda was looked for and what to do; nothing changes
    and nothing is fetched. lab01, with conda, in the same run, is untouched (and keeps the run
    going: pyinfra prints no results when every host has failed)."""
    requests, files = len(read_log(lab.mirror_state_dir(lab_dir))), snapshot(lab_dir)
    status, results, counts, stderr = counted_deploy(
        lab_dir, tmp_path, "--limit", "lab07", "--limit", "lab01",
        "--data", "torch_installer=conda", "--data", "torch_conda_bootstrap=False",
    )  # fmt: skip
    assert status == 1 and results["failed_hosts"] == ["lab07"]
    assert changed_hosts(results) == set()
    reason = (
        "no conda found (CONDA_EXE, PATH, /opt/conda, ~/miniconda3, ~/miniforge3) and "
        "torch_conda_bootstrap is off: install Miniconda or Miniforge, set "
        "torch_conda_bootstrap = True to have labtorch install Miniforge from the mirror, or set "
        "torch_installer = 'pip' for this host"
    )
    assert f"[lab07] labtorch: {reason}" in stderr
    assert by_op(results, "error")["Find conda"] == ["lab07"]
    lines = counts["hosts"]["lab07"]["command_lines"]
    assert lines[0] == SNAPSHOT_COMMAND and lines[1].startswith("echo 'labtorch: no conda found")
    assert len(lines) == 2
    assert counts["hosts"]["lab01"]["command_lines"] == [SNAPSHOT_COMMAND]
    assert len(read_log(lab.mirror_state_dir(lab_dir))) == requests
    assert changed_files(files, snapshot(lab_dir)) == {}


def test_a_host_whose_facts_cannot_be_read_fails_alone(lab_dir, tmp_path):
    """lab07's uname prints nothing (a broken /usr/local/bin/uname ahead of /usr/bin on sshd's
    PATH), so its snapshot has no system section: pyinfra cannot process the fact, lab07 fails
    with that error and the report says its facts could not be read, and nothing else is done
    there; lab01 in the same run is untouched."""
    uname = "/usr/local/bin/uname"
    broken = f"printf '#!/bin/sh\\nexit 0\\n' > {uname} && chmod +x {uname}"
    must(ssh(lab_dir, "lab07", broken))
    requests, files = len(read_log(lab.mirror_state_dir(lab_dir))), snapshot(lab_dir)
    try:
        status, results, counts, stderr = counted_deploy(
            lab_dir, tmp_path, "--limit", "lab07", "--limit", "lab01"
        )
    finally:
        must(ssh(lab_dir, "lab07", f"rm {uname}"))
    assert status == 1 and results["failed_hosts"] == ["lab07"]
    assert changed_hosts(results) == set()
    assert "[lab07] ValueError: not labtorch host state output (no system section)" in stderr
    assert counts["hosts"]["lab07"]["command_lines"] == [SNAPSHOT_COMMAND]
    assert counts["hosts"]["lab01"]["command_lines"] == [SNAPSHOT_COMMAND]
    report = {h["name"]: h for h in json.loads((lab_dir / "report.json").read_text())["hosts"]}
    assert report["lab07"]["status"] == "failed"
    assert report["lab07"]["reason"] == "the host's facts could not be read"
    assert report["lab01"]["status"] == "ok"
    assert len(read_log(lab.mirror_state_dir(lab_dir))) == requests
    assert changed_files(files, snapshot(lab_dir)) == {}


def test_probe_always_probes_again_and_changes_nothing_else(lab_dir, tmp_path):
    """torch_probe = "always": a converged host runs the snapshot and the probe (2 commands);
    the probe's result in the env is written anew, with the loaded driver; nothing else moves."""
    requests, files = len(read_log(lab.mirror_state_dir(lab_dir))), snapshot(lab_dir)
    status, results, counts, _ = counted_deploy(
        lab_dir, tmp_path, "--limit", "lab01", "--data", "torch_probe=always"
    )
    assert status == 0 and results["failed_hosts"] == []
    assert changed_hosts(results) == set()
    lines = counts["hosts"]["lab01"]["command_lines"]
    assert lines[0] == SNAPSHOT_COMMAND and lines[1].startswith("if [ -x /opt/conda/envs/torch/")
    assert len(lines) == 2
    assert len(read_log(lab.mirror_state_dir(lab_dir))) == requests
    cache = "/opt/conda/envs/torch/.labtorch-probe.json"
    assert changed_files(files, snapshot(lab_dir)) == {"lab01": [cache]}
    kept = json.loads(must(ssh(lab_dir, "lab01", f"cat {cache}")))
    driver = must(ssh(lab_dir, "lab01", "cat /sys/module/nvidia/version")).strip()
    assert kept["kernel_driver"] == driver
    assert kept["gpu"]["available"] is True
    # Back to on-change: the result it just kept is reused, one command again.
    assert_noop_rerun(lab_dir, tmp_path, "--limit", "lab01")


def test_bad_setting_stops_before_any_host_is_touched(lab_dir):
    before = len(read_log(lab.mirror_state_dir(lab_dir)))
    status, results, stderr = deploy(lab_dir, "--data", "torch_variant=cuda12")
    assert status != 0
    assert results is None or changed_hosts(results) == set()
    assert "torch_variant" in stderr and "must look like auto, cpu or cu121" in stderr
    assert len(read_log(lab.mirror_state_dir(lab_dir))) == before


def test_strict_driver_policy_gives_lab06_the_cpu_build_and_the_default_repairs_it(
    lab_dir, tmp_path
):
    """With torch_driver_policy=strict, lab06's driver (CUDA 11.7) runs no 2.3.1 CUDA build in
    full: it gets the CPU build, which the probe fails on a GPU host, naming the driver it needs.
    The next run, on the default policy, puts cu118 back; the run after changes nothing."""
    # lab04 (converged) runs beside it: a run whose every host fails ends with pyinfra's "No
    # hosts remaining!" and no results.
    pair = ("--limit", "lab04", "--limit", "lab06")
    status, results, stderr = deploy(lab_dir, *pair, "--data", "torch_driver_policy=strict")
    assert status == 1 and results["failed_hosts"] == ["lab06"]
    assert "lab06: a CPU build on a host with 1 GPU(s): upgrade the NVIDIA driver" in stderr
    assert by_op(results, "error")["Prove torch works"] == ["lab06"]
    probe = "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"
    python = "/opt/conda/envs/torch/bin/python"
    assert must(ssh(lab_dir, "lab06", f"{python} -c '{probe}'")).strip() == "2.3.1 None False"
    status, results, _ = deploy(lab_dir, *pair)
    assert status == 0 and changed_hosts(results) == {"lab06"}
    assert must(ssh(lab_dir, "lab06", f"{python} -c '{probe}'")).strip() == "2.3.1 11.8 True"
    assert_noop_rerun(lab_dir, tmp_path, *pair)
