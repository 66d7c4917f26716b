"""The lab cache end to end: the real pyinfra CLI over real SSH, nginx running in lab01's
namespace (the lab's ``LABTORCH_SIM_CACHE=lab01``), on one lab for the module, in order:

(a) the first converge through the cache: the mirror's log shows every file the fleet fetched
    at most once (the controller's own lock solving aside: it is not the fleet), every host's
    packages came from the cache, and the hosts' downloads were all hits, the cache having been
    warmed with the locks' files; nginx listens where the settings say and nowhere else;
(b) the rerun changes nothing, the cache host included, which runs two commands;
(c) the cache host down before the run: every host that installs goes straight to the mirror,
    with a note that says why; the next full run brings the cache back and changes nothing else;
(d) the cache killed in the middle of the installs: they complete through the mirror, noted;
(e) the mirror answering 403: the cache fetches from the fallback (its backup upstream), the
    hosts notice nothing but the cache host's note;
(f) anything but GET and HEAD, a directory listing, or a path outside the mirror's layout is
    refused by the cache, and never reaches the mirror.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from labhelpers import REPO, lab_env, mirror_url, must, running_lab, ssh
from labhelpers import deploy as run_deploy

from labtorch.rules.cache import PACKAGE_SUFFIXES, WARM_AGENT
from labtorch_sim import lab
from labtorch_sim.cache import CACHE_ENV, cache_port
from labtorch_sim.mirror import read_log, set_fault
from labtorch_sim.network import CACHE_BIND

CACHE_HOST = "lab01"
COUNTER = REPO / "bench" / "count_commands.py"
# What a deploy made on a host, removed so that the next one installs (and downloads) again.
CLEAN = "rm -rf /opt/conda/envs/torch /opt/conda/pkgs/* /opt/labtorch/venvs/torch /root/.cache/pip"
KILL_NGINX = "m=$(cat /var/lib/labtorch-cache/nginx.pid) && kill -9 $m $(pgrep -P $m)"
UPSTREAM_LOG = Path("upper/var/log/labtorch-cache/upstream.log")
ACCESS_LOG = Path("upper/var/log/labtorch-cache/access.log")
# The controller's requests when it solves a lock (labtorch lock, or torch_lock = "auto"): they
# are not the fleet's downloads (tests/test_e2e_locks.py).
CONTROLLER_AGENTS = ("labtorch-lock/", "uv/")


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    os.environ[CACHE_ENV] = CACHE_HOST
    try:
        with running_lab(tmp_path_factory, "e2e-cache") as state_dir:
            yield state_dir
    finally:
        os.environ.pop(CACHE_ENV, None)


def cache_url(lab_dir: Path) -> str:
    return f"http://127.0.0.1:{cache_port(mirror_url(lab_dir))}"


def deploy(lab_dir: Path, *extra: str) -> tuple[int, dict, dict]:
    """The deploy; its --json results and the fleet report it wrote."""
    status, results, stderr = run_deploy(lab_dir, lab_dir, *extra)
    assert results is not None, stderr
    report = json.loads((lab_dir / "report.json").read_text())
    return status, results, {record["name"]: record for record in report["hosts"]}


def requests_since(lab_dir: Path, start: int) -> list[dict]:
    return read_log(lab.mirror_state_dir(lab_dir))[start:]


def log_size(lab_dir: Path) -> int:
    return len(read_log(lab.mirror_state_dir(lab_dir)))


def fleet(entries: list[dict]) -> list[dict]:
    return [e for e in entries if not (e.get("user_agent") or "").startswith(CONTROLLER_AGENTS)]


def path_of(entry: dict) -> str:
    return unquote(urlsplit(entry["path"] or "").path)


def hosts(lab_dir: Path) -> list[str]:
    return [host.name for host in lab.status(lab_dir).hosts]


def others(lab_dir: Path) -> list[str]:
    return [name for name in hosts(lab_dir) if name != CACHE_HOST]


def clean(lab_dir: Path, *names: str) -> None:
    for name in names:
        must(ssh(lab_dir, name, CLEAN))


def purge_cache(lab_dir: Path) -> None:
    """An empty cache, so that what follows is fetched upstream again."""
    must(ssh(lab_dir, CACHE_HOST, "systemctl stop labtorch-cache && "
             "rm -rf /var/cache/labtorch-cache/* && systemctl start labtorch-cache"))  # fmt: skip


def host_log(lab_dir: Path, relative: Path) -> list[dict]:
    """A log the cache host wrote, read from its disk (the upper layer of its /var)."""
    path = lab_dir / "hosts" / CACHE_HOST / relative
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def notes(record: dict) -> list[str]:
    return record.get("notes") or []


def bypassed(record: dict) -> list[str]:
    return [note for note in notes(record) if note.startswith("installed without the lab cache")]


def changed_hosts(results: dict) -> set[str]:
    return {name for op in results["operations"] for name in op["success"]}


def converged(records: dict, names: list[str]) -> None:
    for name in names:
        assert records[name]["status"] == "ok", (name, records[name]["reason"])


def origin(record: dict) -> str:
    return record["provenance"]["torch"] or ""


def status_of(url: str, method: str = "GET") -> int:
    """The HTTP status of one request; 0 when nothing answers (the port refuses the
    connection, or the lab's relay resets it: no host's nginx behind it)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionResetError):
        return 0


FIRST: dict = {}


def test_first_converge_fetches_each_file_once_for_the_whole_fleet(lab_dir: Path):
    start = log_size(lab_dir)
    _, results, records = deploy(lab_dir)
    FIRST["failed"] = set(results["failed_hosts"])
    FIRST["records"] = records
    requests = fleet(requests_since(lab_dir, start))
    fetched = Counter(path_of(entry) for entry in requests)
    assert fetched, "the fleet fetched nothing"
    assert {p: n for p, n in fetched.items() if n > 1} == {}, "a file crossed the link twice"
    assert any(path.endswith(PACKAGE_SUFFIXES) for path in fetched)
    # Everything the fleet fetched, the cache fetched (its upstream log), but for the Miniforge
    # installer that a host without conda downloads before it has a plan (README "Lab cache").
    upstream = Counter(unquote(urlsplit(e["uri"]).path) for e in host_log(lab_dir, UPSTREAM_LOG))
    assert {p for p in fetched if not p.startswith("/github-release/")} == set(upstream)
    url = cache_url(lab_dir)
    ok = [name for name, record in records.items() if record["status"] == "ok"]
    assert ok and all("cache" not in (r["reason"] or "") for r in records.values())
    for name in ok:
        assert origin(records[name]).startswith(url + "/"), (name, origin(records[name]))
        assert bypassed(records[name]) == [], name
    cache_notes = " | ".join(notes(records[CACHE_HOST]))
    assert "warmed the cache with" in cache_notes and "the cache fetched" in cache_notes
    # The locks' files were fetched once, by the warming, before any host asked: every download
    # of a package file by a host was a hit (item 3 of the issue).
    hits = [
        entry
        for entry in host_log(lab_dir, ACCESS_LOG)
        if entry["agent"] != WARM_AGENT and entry["uri"].endswith(PACKAGE_SUFFIXES)
    ]
    assert hits and {entry["cache"] for entry in hits} == {"HIT"}


def test_nginx_listens_where_the_settings_say_and_nowhere_else(lab_dir: Path):
    master = must(ssh(lab_dir, CACHE_HOST, "cat /var/lib/labtorch-cache/nginx.pid")).strip()
    listening = must(ssh(lab_dir, CACHE_HOST, "ss -Hltnp")).splitlines()
    ours = {line.split()[3] for line in listening if f"pid={master}," in line}
    assert ours == {f"{CACHE_BIND}:{cache_port(mirror_url(lab_dir))}"}


def counted_deploy(lab_dir: Path, tmp_path: Path) -> tuple[dict, dict]:
    counts = tmp_path / "counts.json"
    done = subprocess.run(
        [sys.executable, str(COUNTER), "--out", str(counts), "--",
         "inventories/sim.py", "deploys/pytorch.py", "-y", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
        env=lab_env(lab_dir),
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr
    return json.loads(done.stdout)["results"], json.loads(counts.read_text())


def test_rerun_changes_nothing_the_cache_host_included(lab_dir: Path, tmp_path: Path):
    start = log_size(lab_dir)
    results, counts = counted_deploy(lab_dir, tmp_path)
    assert changed_hosts(results) == set()
    assert requests_since(lab_dir, start) == []
    assert set(results["failed_hosts"]) == FIRST["failed"]
    # The cache host: its cache's state, then its snapshot; nothing read at the end, as no
    # host installed anything.
    lines = counts["hosts"][CACHE_HOST]["command_lines"]
    assert len(lines) == 2 and lines[0].startswith("echo @@labtorch-cache nginx"), lines
    for name, count in counts["hosts"].items():
        if name != CACHE_HOST and name not in FIRST["failed"]:
            assert count["commands"] == 1, (name, count["command_lines"])


def test_cache_host_down_before_the_run(lab_dir: Path):
    must(ssh(lab_dir, CACHE_HOST, "systemctl stop labtorch-cache"))
    clean(lab_dir, "lab02", "lab07")
    start = log_size(lab_dir)
    limit = [arg for name in others(lab_dir) for arg in ("--limit", name)]
    _, _, records = deploy(lab_dir, *limit)
    converged(records, ["lab02", "lab07"])
    url = cache_url(lab_dir)
    for name in ("lab02", "lab07"):
        (note,) = bypassed(records[name])
        assert note.startswith(f"installed without the lab cache: bypassed {url}: "), note
        assert "connect" in note.lower(), note
        assert origin(records[name]).startswith(mirror_url(lab_dir) + "/"), origin(records[name])
    assert [name for name in others(lab_dir) if bypassed(records[name])] == ["lab02", "lab07"]
    assert any(path_of(e).endswith(PACKAGE_SUFFIXES) for e in requests_since(lab_dir, start))
    # The next run, the cache host in it, starts the cache again and changes nothing else.
    _, results, records = deploy(lab_dir)
    assert changed_hosts(results) == {CACHE_HOST}
    assert status_of(f"{url}/labtorch-cache/status") == 200


def _first_fetch(lab_dir: Path, after: int, timeout_s: float = 60) -> None:
    """Wait until the cache fetched a package file upstream (the hosts are installing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entries = host_log(lab_dir, UPSTREAM_LOG)[after:]
        if any(entry["uri"].endswith(PACKAGE_SUFFIXES) for entry in entries):
            return
        time.sleep(0.05)
    raise AssertionError("the cache fetched no package file")


def test_cache_killed_in_the_middle_of_the_installs(lab_dir: Path):
    names = ["lab02", "lab04", "lab05"]  # conda-forge's pytorch 2.7.1
    purge_cache(lab_dir)
    clean(lab_dir, *names)
    state = lab.mirror_state_dir(lab_dir)
    # The hosts solve and download through the cache themselves (no lock, so no warming), and
    # pytorch's file takes long: the cache dies while it is on its way.
    set_fault(state, "/anaconda/cloud/conda-forge/linux-64/pytorch-", "slow", delay_s=20)
    after = len(host_log(lab_dir, UPSTREAM_LOG))
    env = lab_env(lab_dir)
    argv = ["inventories/sim.py", "deploys/pytorch.py", "-y", "--json"]
    argv += ["--data", "torch_lock=off", *(arg for name in names for arg in ("--limit", name))]
    run = subprocess.Popen(
        [str(Path(sys.executable).parent / "pyinfra"), *argv],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _first_fetch(lab_dir, after)
        time.sleep(1.0)  # the hosts' other downloads are on their way
        must(ssh(lab_dir, CACHE_HOST, KILL_NGINX))
        out, err = run.communicate(timeout=300)
    finally:
        # Cleared once the run is over: the mirror has answered every request of the dead cache
        # (the installs from the mirror itself waited as long for pytorch's file).
        set_fault(state, "/anaconda/cloud/conda-forge/linux-64/pytorch-", None)
        if run.poll() is None:
            run.kill()
    assert out.strip(), err
    records = {r["name"]: r for r in json.loads((lab_dir / "report.json").read_text())["hosts"]}
    converged(records, names)
    for name in names:
        assert bypassed(records[name]), (name, notes(records[name]))
        assert origin(records[name]).startswith(mirror_url(lab_dir) + "/"), origin(records[name])
    assert status_of(f"{cache_url(lab_dir)}/labtorch-cache/status") == 0
    # Back: the next run starts the cache again; the three hosts stay converged.
    _, results, records = deploy(lab_dir)
    assert CACHE_HOST in changed_hosts(results)
    converged(records, names)
    assert status_of(f"{cache_url(lab_dir)}/labtorch-cache/status") == 200


def test_mirror_403_the_cache_takes_the_backup_upstream(lab_dir: Path):
    purge_cache(lab_dir)
    clean(lab_dir, "lab02", "lab07")
    state = lab.mirror_state_dir(lab_dir)
    blocked = ("/anaconda/", "/pypi/", "/pytorch-wheels/")
    for prefix in blocked:
        set_fault(state, prefix, "403")
    start = log_size(lab_dir)
    try:
        _, _, records = deploy(lab_dir)
    finally:
        for prefix in blocked:
            set_fault(state, prefix, None)
    converged(records, ["lab02", "lab07"])
    url, fallback = cache_url(lab_dir), lab.status(lab_dir).mirror.fallback_url
    for name in ("lab02", "lab07"):
        assert origin(records[name]).startswith(url + "/"), origin(records[name])
        assert notes(records[name]) == [], notes(records[name])
    (served,) = [n for n in notes(records[CACHE_HOST]) if "came from the fallback mirror" in n]
    assert f"came from the fallback mirror {fallback} (the mirror answered 403 to" in served
    requests = fleet(requests_since(lab_dir, start))
    primary = [e for e in requests if not path_of(e).startswith("/fallback/")]
    assert {e["status"] for e in primary} == {403}, [(e["path"], e["status"]) for e in primary]
    assert any(path_of(e).startswith("/fallback/") and e["status"] == 200 for e in requests)


def test_the_cache_refuses_other_methods_listings_and_paths_outside_the_layout(lab_dir: Path):
    url = cache_url(lab_dir)
    start = log_size(lab_dir)
    package = next(
        e["uri"] for e in host_log(lab_dir, ACCESS_LOG) if e["uri"].endswith(PACKAGE_SUFFIXES)
    )
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        assert status_of(url + package, method) == 403, method
    for path in (
        "/etc/passwd",
        "/fallback/anaconda/cloud/conda-forge/noarch/repodata.json",
        "/anaconda/cloud/bioconda/noarch/repodata.json",
        "/anaconda/cloud/conda-forge/linux-64/",
        "/anaconda/pkgs/main/",
        "/pypi/web/packages/",
        "/pypi/web/",
        "/pytorch-wheels/",
    ):
        assert status_of(url + path) == 403, path
    assert requests_since(lab_dir, start) == [], "a refused request reached the mirror"
    assert status_of(url + package, "HEAD") == 200
    assert status_of(f"{url}/pypi/web/simple/torch/") == 200
