"""Locks end to end (issue 13): ``labtorch lock`` and the deploy with locks, through the real
pyinfra CLI over real SSH against the simulated lab.

The tests run in order on one lab of the default profiles: (d) with ``torch_lock = "frozen"``
and no lock, every host fails before anything changes on it; (a) ``labtorch lock`` writes one lock
per class, solved on the controller only, and the first converge then makes no repodata or
simple-index request from any host, every host of a class holding byte-identical packages, those
of its lock; (b) a rerun changes nothing and asks the mirror for nothing; (c) a package file
altered on the mirror fails the host that fetches it, with both hashes, and leaves its env as it
was, while the rest of its class is untouched; (e) a driver upgrade on one host moves it to
another class and relocks only what that needs.

The mirror's log tells the controller's requests from the hosts': the lock's solve sends
``User-Agent: labtorch-lock/<version>`` (py-rattler) or uv's own ``uv/<version>``; the hosts' conda
and pip send theirs (every host and the controller are 127.0.0.1, so the address cannot).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from labhelpers import REPO, lab_env, running_lab, ssh
from labhelpers import deploy as run_deploy

from labtorch.locking.solve import USER_AGENT
from labtorch.rules.locks import INDEX_FILE
from labtorch_sim import fakedriver, lab
from labtorch_sim.miniforge import TREE as MINIFORGE_TREE
from labtorch_sim.mirror import read_log, set_fault
from labtorch_sim.profiles import load_profiles

CONDA_ENV = "/opt/conda/envs/torch"
VENV = "/opt/labtorch/venvs/torch"
# What a host's env holds, as bytes: each conda package's archive (by the URL conda-meta records)
# and each pip distribution's RECORD (the sha256 of every file it installed).
_PACKAGES = (
    f"if [ -d {CONDA_ENV}/conda-meta ]; then for f in {CONDA_ENV}/conda-meta/*.json; do "
    'u=$(grep -o \'"url": *"[^"]*"\' "$f" | head -n 1 | sed \'s/.*"\\(.*\\)"$/\\1/\'); '
    'n=${u##*/}; printf "conda %s %s\\n" "$n" "$(sha256sum < /opt/conda/pkgs/$n | cut -c1-64)"; '
    f"done; fi; for r in {VENV}/lib/python3*/site-packages/*.dist-info/RECORD; do "
    '[ -f "$r" ] && printf "pip %s %s\\n" "${r%/RECORD}" "$(sha256sum < "$r" | cut -c1-64)"; '
    "done; true"
)


def is_controller(entry: dict) -> bool:
    agent = entry.get("user_agent") or ""
    return agent.startswith((USER_AGENT.split("/")[0] + "/", "uv/"))


def is_index(entry: dict) -> bool:
    path = urlsplit(entry["path"] or "").path
    return path.endswith(("repodata.json", "repodata.json.bz2", "repodata.json.zst")) or (
        "/simple/" in path or path.endswith(("/simple", "/"))
    )


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory, "e2e-locks") as state_dir:
        yield state_dir


def env(lab_dir: Path, locks: Path | None = None) -> dict:
    return {**lab_env(lab_dir), "LABTORCH_LOCK_DIR": str(locks or lab_dir / "locks")}


def deploy(lab_dir: Path, *extra: str, locks: Path | None = None):
    previous = os.environ.get("LABTORCH_LOCK_DIR")
    os.environ["LABTORCH_LOCK_DIR"] = str(locks or lab_dir / "locks")
    try:
        return run_deploy(lab_dir, lab_dir, *extra)
    finally:
        if previous is None:
            os.environ.pop("LABTORCH_LOCK_DIR")
        else:
            os.environ["LABTORCH_LOCK_DIR"] = previous


def labtorch_lock(lab_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labtorch.cli.main", "lock", "inventories/sim.py",
         "--output", str(lab_dir / "locks"), *extra],
        cwd=REPO, env=env(lab_dir), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def index(lab_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((lab_dir / "locks" / INDEX_FILE).read_text())["classes"]


def lock_files(lab_dir: Path, record: dict) -> dict[str, str]:
    """filename -> sha256 of the class's lock (the sha256 explicit file, or the pip file)."""
    name = next(p for p in record["files"] if p.endswith(("sha256.txt", "requirements.txt")))
    text = (lab_dir / "locks" / name).read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if line.startswith("http"):
            url, digest = line.split("#")
            found[unquote(url.rsplit("/", 1)[-1])] = digest
        elif " @ " in line:
            url = line.split(" @ ")[1].split()[0]
            found[unquote(url.rsplit("/", 1)[-1])] = line.rsplit("--hash=sha256:", 1)[1].strip()
    return found


def held(lab_dir: Path, host: str) -> set[tuple[str, str, str]]:
    done = ssh(lab_dir, host, _PACKAGES)
    assert done.returncode == 0, done.stderr
    return {tuple(line.split(" ", 2)) for line in done.stdout.decode().splitlines()}


def listing(lab_dir: Path, host: str) -> str:
    done = ssh(lab_dir, host, f"ls -l --time-style=+%s {CONDA_ENV}/conda-meta/*.json 2>&1; true")
    return done.stdout.decode()


def hosts_of(lab_dir: Path) -> list[str]:
    return [host.name for host in lab.status(lab_dir).hosts]


def test_d_frozen_without_a_lock_fails_every_host_before_it_changes_anything(lab_dir, tmp_path):
    condarc = "sha256sum /opt/conda/.condarc 2>/dev/null; true"
    before_rc = {host: ssh(lab_dir, host, condarc).stdout for host in hosts_of(lab_dir)}
    before = len(read_log(lab.mirror_state_dir(lab_dir)))
    status, results, stderr = deploy(lab_dir, "--data", "torch_lock=frozen", locks=tmp_path)
    assert status == 1
    # Every host failed, so pyinfra stops with "No hosts remaining!" and prints no results.
    assert results is None and "No hosts remaining!" in stderr
    for host in ("lab01", "lab07"):
        line = next(line for line in stderr.splitlines() if f"[{host}] labtorch: " in line)
        assert 'torch_lock is "frozen" and no lock for class ' in line
        assert f"run `labtorch lock INVENTORY --limit {host}`" in line
    for host in hosts_of(lab_dir):
        gone = ssh(lab_dir, host, f"test -e {CONDA_ENV} || test -e {VENV} || echo none")
        assert gone.stdout.decode().strip() == "none"
        assert ssh(lab_dir, host, condarc).stdout == before_rc[host]
    assert read_log(lab.mirror_state_dir(lab_dir))[before:] == []
    assert not (tmp_path / INDEX_FILE).exists()


def test_a_one_lock_per_class_and_the_first_converge_reads_no_index_on_any_host(lab_dir):
    log_dir = lab.mirror_state_dir(lab_dir)
    before = len(read_log(log_dir))
    done = labtorch_lock(lab_dir)
    # lab08's driver is not loaded: it has no plan, so no class, and the command says so.
    assert done.returncode == 1, done.stderr
    assert "lab08: no lock: nvidia-smi failed (driver-not-loaded)" in done.stderr
    classes = index(lab_dir)
    planned = [host for host in hosts_of(lab_dir) if host != "lab08"]
    members = [host for record in classes.values() for host in record["hosts"]]
    assert sorted(members) == sorted(planned)  # every plannable host in exactly one class
    assert len(classes) == len(set(map(lambda r: json.dumps(r["inputs"]), classes.values())))
    locking = read_log(log_dir)[before:]
    assert locking and all(is_controller(entry) for entry in locking), locking
    for record in classes.values():
        assert record["packages"] == len(lock_files(lab_dir, record))
        if record["inputs"]["installer"] == "conda":
            assert any(v.startswith("__glibc=") for v in record["virtual_packages"])

    before = len(read_log(log_dir))
    status, _, _ = deploy(lab_dir)
    assert status == 1  # lab08, and the CPU build on a GPU host, fail as they do without locks
    requests = read_log(log_dir)[before:]
    assert requests and not any(is_controller(entry) for entry in requests)
    assert [entry["path"] for entry in requests if is_index(entry)] == []
    locked = {name for record in classes.values() for name in lock_files(lab_dir, record)}
    # lab09 has no conda: before its env it gets Miniforge (installer and checksum), not locked.
    fetched = {
        unquote(entry["path"].rsplit("/", 1)[-1])
        for entry in requests
        if not entry["path"].startswith(f"/{MINIFORGE_TREE}/")
    }
    assert fetched <= locked  # hosts fetched the locks' files and nothing else

    for record in classes.values():
        sets = {host: held(lab_dir, host) for host in record["hosts"]}
        first = next(iter(sets.values()))
        assert all(value == first for value in sets.values()), sets  # byte-identical
        if record["inputs"]["installer"] == "conda":
            assert {(name, digest) for _, name, digest in first} == set(
                lock_files(lab_dir, record).items()
            )
        else:
            distributions = {Path(name).name for _, name, _ in first}
            for filename in lock_files(lab_dir, record):
                project, version = filename.split("-")[:2]
                assert f"{project}-{version}.dist-info" in distributions


def test_b_a_rerun_changes_nothing_and_asks_the_mirror_for_nothing(lab_dir):
    log_dir = lab.mirror_state_dir(lab_dir)
    locks_before = {p: p.read_bytes() for p in (lab_dir / "locks").rglob("*") if p.is_file()}
    before = len(read_log(log_dir))
    status, results, _ = deploy(lab_dir)
    assert status == 1
    assert {name for op in results["operations"] for name in op["success"]} == set()
    assert read_log(log_dir)[before:] == []
    locks_after = {p: p.read_bytes() for p in (lab_dir / "locks").rglob("*") if p.is_file()}
    assert locks_after == locks_before


def test_c_an_altered_package_fails_the_host_that_fetches_it_and_leaves_its_env(lab_dir):
    classes = index(lab_dir)
    record = next(
        r for r in classes.values() if r["inputs"]["installer"] == "conda" and len(r["hosts"]) > 1
    )
    victim, *others = record["hosts"]
    files = lock_files(lab_dir, record)
    target = next(name for name in files if name.startswith("torchaudio-"))
    name = "torchaudio"
    must = ssh(lab_dir, victim, f"/opt/conda/bin/conda remove -p {CONDA_ENV} --offline -y -q "
                                f"{name} && rm -f /opt/conda/pkgs/{target}")  # fmt: skip
    assert must.returncode == 0, must.stderr
    env_before = listing(lab_dir, victim)
    others_before = {host: held(lab_dir, host) for host in others}
    root = lab.mirror_state_dir(lab_dir) / "root"
    package = next(root.rglob(target))
    original = package.read_bytes()
    package.write_bytes(original + b"altered on the mirror")
    served = hashlib.sha256(package.read_bytes()).hexdigest()
    try:
        status, _, stderr = deploy(lab_dir)
    finally:
        package.write_bytes(original)
    assert status == 1
    line = (
        f"[{victim}] labtorch: hash mismatch: {target}: the lock says sha256 {files[target]}, "
        f"the mirror served {served}"
    )
    assert line in stderr
    report = json.loads((lab_dir / "report.json").read_text())
    row = next(h for h in report["hosts"] if h["name"] == victim)
    assert files[target] in json.dumps(row) and served in json.dumps(row)
    assert listing(lab_dir, victim) == env_before  # not half-changed: exactly as it was
    assert {host: held(lab_dir, host) for host in others} == others_before
    # With the mirror's file put back, the host is repaired from its lock.
    status, _, _ = deploy(lab_dir, "--limit", victim)
    assert {(n, d) for _, n, d in held(lab_dir, victim)} == set(files.items())


def _upgrade_driver(lab_dir: Path, host: str, capture: str, tmp_path: Path) -> None:
    """Give ``host`` another nvidia-smi (and its kernel module), as a driver upgrade would, on
    the same disk: its envs stay."""
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(f"profiles:\n  upgraded:\n    nvidia_smi:\n      xml: {capture}\n"
                        "lab: [upgraded]\n")  # fmt: skip
    profile = load_profiles(profiles).profiles["upgraded"]
    directory = lab_dir / "hosts" / host
    for relative, (content, mode) in fakedriver.nvidia_smi_files(profile).items():
        path = directory / "usrlocal" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    proc, sys_module = fakedriver.kernel_module_files(profile)
    for tree, files in (("proc", proc), ("sys", sys_module)):
        for relative, (content, mode) in files.items():
            path = directory / "kernel" / tree / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                path.chmod(0o644)
            path.write_bytes(content)
            path.chmod(mode)
    info = fakedriver.host_json(profile, host)
    (directory / "upper" / "etc" / "labtorch-sim" / "host.json").write_text(json.dumps(info))
    # The new kernel module is loaded (as after the reboot an upgrade asks for): the host's
    # /proc/driver and /sys/module are tmpfs copies made when it started.
    pid = (directory / "pid").read_text().strip()
    for tree, where in (("proc", "/proc/driver"), ("sys", "/sys/module")):
        reload = (
            f"mount -o remount,rw {where} && rm -rf {where}/* && tar -C {where} -xf - && "
            f"mount -o remount,ro {where}"
        )
        files = subprocess.run(
            ["tar", "-C", str(directory / "kernel" / tree), "-cf", "-", "."],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        subprocess.run(["nsenter", "-t", pid, "-m", "sh", "-c", reload], input=files, check=True)


def test_e_a_driver_upgrade_on_one_host_relocks_only_its_new_class(lab_dir, tmp_path):
    log_dir = lab.mirror_state_dir(lab_dir)
    before_classes = index(lab_dir)
    old_class = next(i for i, r in before_classes.items() if "lab06" in r["hosts"])
    _upgrade_driver(lab_dir, "lab06", "xml_rtx3090_590.44.01.xml", tmp_path)
    before = len(read_log(log_dir))
    done = labtorch_lock(lab_dir)
    assert done.returncode == 1, done.stderr  # lab08 still has no plan
    after_classes = index(lab_dir)
    new_class = next(i for i, r in after_classes.items() if "lab06" in r["hosts"])
    assert new_class != old_class
    assert (
        after_classes[new_class]["inputs"]["variant"]
        != before_classes[old_class]["inputs"]["variant"]
    )
    for lock_id, record in after_classes.items():
        if lock_id in before_classes:  # kept, not solved again: same time, same files
            old = before_classes[lock_id]
            assert (record["created"], record["files"]) == (old["created"], old["files"])
            assert set(record["hosts"]) - {"lab06"} == set(old["hosts"]) - {"lab06"}
        else:
            assert lock_id == new_class  # the only class solved
    if set(before_classes[old_class]["hosts"]) == {"lab06"}:
        assert old_class not in after_classes  # no host uses it any more
    locking = read_log(log_dir)[before:]
    assert all(is_controller(entry) for entry in locking)
    if new_class in before_classes:
        assert locking == []  # lab06 joined a class whose lock holds: nothing to solve
    else:
        channels = after_classes[new_class]["solved_against"]
        paths = {urlsplit(c).path for c in channels}
        assert all(any(e["path"].startswith(p) for p in paths) for e in locking)

    before = len(read_log(log_dir))
    deploy(lab_dir, "--limit", "lab06")
    host_requests = read_log(log_dir)[before:]
    assert [e["path"] for e in host_requests if is_index(e) or is_controller(e)] == []
    assert {(n, d) for _, n, d in held(lab_dir, "lab06")} == set(
        lock_files(lab_dir, after_classes[new_class]).items()
    )


def test_f_a_blocked_mirror_installs_the_same_files_from_the_fallback(lab_dir):
    """TUNA's 403 on the first mirror: the host installs its lock's files from the fallback, at
    the same relative path, checked by the same hashes, still reading no index."""
    state = lab.mirror_state_dir(lab_dir)
    classes = index(lab_dir)
    record = next(r for r in classes.values() if "lab01" in r["hosts"])
    must = ssh(lab_dir, "lab01", "/opt/conda/bin/conda remove -n torch --all -y -q && "
                                 "rm -rf /opt/conda/pkgs/*")  # fmt: skip
    assert must.returncode == 0, must.stderr
    start = len(read_log(state))
    set_fault(state, "/anaconda/", "403")
    try:
        deploy(lab_dir, "--limit", "lab01")
    finally:
        set_fault(state, "/anaconda/", None)
    log = read_log(state)[start:]
    assert [e["path"] for e in log if is_index(e) or is_controller(e)] == []
    assert {e["status"] for e in log if e["path"].startswith("/anaconda/")} == {403}
    served = {unquote(e["path"].rsplit("/", 1)[-1]) for e in log if e["status"] == 200}
    assert served == set(lock_files(lab_dir, record))
    assert all(e["path"].startswith("/fallback/anaconda/") for e in log if e["status"] == 200)
    assert {(n, d) for _, n, d in held(lab_dir, "lab01")} == set(
        lock_files(lab_dir, record).items()
    )
