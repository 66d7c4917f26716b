"""Benchmark: labtorch's first converge and no-op rerun against a minimal pyinfra deploy (the
floor) and the same deploy as an Ansible playbook, on the simulated lab.

    python bench/run.py [--sizes 10,30,100] [--runs 3] [--quick]

For each N it brings up a lab of N hosts (``--state-dir``, default /tmp/labtorch-bench), then,
R times, interleaved: cleans the hosts (untimed), times labtorch's first converge, its no-op
rerun, the floor's rerun and the Ansible playbook's rerun; then brings the lab down. It also
times ``labtorch plan`` (median of 10). Every pyinfra run goes through
``bench/count_commands.py``, which counts the remote commands each host received.

Per command: wall time (monotonic clock), controller CPU (user + system of the whole process
tree, from ``wait4``), peak memory (VmRSS summed over the process tree, sampled every 0.2 s).
Cells report the median over the runs. The tables go to stdout and, with the date, the
machine's core count and load, to ``bench/RESULTS.md`` (``--quick``: to the work directory).

Exit status: 0 when the benchmark ran (a missed target is reported, not an error); 1 when a
command did something unexpected (its log is named); 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from cache_bench import CACHE_ENV, CACHE_SIZES, Egress, cache_table, clean_cache_host, egress

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
BIN = Path(sys.executable).parent
DEFAULT_STATE_DIR = Path("/tmp/labtorch-bench")
DEFAULT_WORK_DIR = Path("/tmp/labtorch-bench-work")
DEFAULT_RESULTS = BENCH / "RESULTS.md"

# Hosts the default lab is made to fail (tests/test_e2e_deploy.py, FAILED): "no-driver" (kernel
# module not loaded: no plan). Volta (CUDA 12.2) now takes the pytorch channel's cu121, and the
# old driver (CUDA 11.7) cu118 under the default driver policy ("auto"). pyinfra exits 1 for it:
# expected, not a benchmark error. Any other failure stops the benchmark.
EXPECTED_FAILING_PROFILES = frozenset({"no-driver"})
# What labtorch's deploy creates on a host: removed before every first-converge sample. The
# conda package cache and pip's cache go too, so that a first converge downloads from the
# mirror as it would on a new machine.
CLEAN_PATHS = (
    "/opt/conda/envs/torch",
    "/opt/conda/.condarc",
    "/opt/conda/.condarc.labtorch-backup",
    "/opt/labtorch",
    "/opt/conda/pkgs/*",
    "/root/.conda",
    "/root/.cache/pip",
)
PLAN_ARGS = (
    "plan",
    "--torch",
    "2.9",
    "--installer",
    "pip",
    "--python",
    "3.12",
    "--nvidia-smi",
    "tests/fixtures/nvidia-smi/table_gtx1080ti_570.86.15.txt",
)
PLAN_RUNS = 10
# First converges cost minutes at N >= 100 on two cores; fewer runs there keep the whole
# benchmark near 15 minutes (--large-first-runs; RESULTS.md says how many were taken).
LARGE_N = 100
SAMPLE_INTERVAL_S = 0.2
KILL_GRACE_S = 2.0

FIRST, NOOP, FLOOR, ANSIBLE = "labtorch first converge", "labtorch no-op", "floor", "ansible"
# The first converge through the lab cache (bench/cache_bench.py), at N in CACHE_SIZES.
FIRST_CACHE = "labtorch first converge, lab cache"
KINDS = (FIRST, FIRST_CACHE, NOOP, FLOOR, ANSIBLE)
TARGET_NOOP_OVER_FLOOR = 1.5
TARGET_NOOP_OVER_FLOOR_AT = (30, 100)
TARGET_COMMANDS_PER_HOST = 2
TARGET_ANSIBLE_OVER_NOOP = 8.0
TARGET_PLAN_S = 0.3


class BenchError(Exception):
    """A command did something the benchmark did not expect; the message names its log."""


# --- measuring one command -------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """One command's cost as the controller saw it."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    status: int


def _children_map() -> dict[int, list[int]]:
    """Every process's children, from /proc/PID/stat (the parent is the 4th field)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after its last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def tree_rss_bytes(root: int) -> int:
    """Resident memory summed over ``root`` and all its descendants."""
    children = _children_map()
    total, pending, page = 0, [root], os.sysconf("SC_PAGE_SIZE")
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


class RssSampler:
    """Samples a process tree's summed RSS in a thread until stopped; keeps the peak."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, tree_rss_bytes(self.root))
            if self._stop.wait(SAMPLE_INTERVAL_S):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(argv: Sequence[str], env: dict[str, str], log: Path) -> Measured:
    """Run ``argv`` from the repository root, output to ``log``; time it and its whole tree."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        with RssSampler(process.pid) as sampler:
            # wait4 reports the child's rusage including every descendant it reaped.
            _, wait_status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    return Measured(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=sampler.peak / 2**20,
        status=process.returncode,
    )


# --- the lab ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lab:
    """The running lab as the benchmark needs it."""

    state_dir: Path
    hosts: tuple[str, ...]
    profiles: dict[str, str]

    @property
    def ssh_config(self) -> Path:
        return self.state_dir / "ssh_config"

    def expected_failures(self) -> set[str]:
        return {
            name for name, profile in self.profiles.items() if profile in EXPECTED_FAILING_PROFILES
        }


def lab_up(n_hosts: int, state_dir: Path) -> Lab:
    """Start a lab of exactly ``n_hosts`` hosts (hosts already up with it are kept)."""
    from labtorch_sim import lab

    result = lab.up(n_hosts, None, state_dir)
    return Lab(
        state_dir=Path(result.state_dir),
        hosts=tuple(host.name for host in result.hosts),
        profiles={host.name: host.profile for host in result.hosts},
    )


def lab_down(state_dir: Path) -> None:
    from labtorch_sim import lab

    lab.down(state_dir)


def ssh_all(lab: Lab, command: str) -> None:
    """Run ``command`` on every host at once over plain ssh; raise if any host fails."""
    processes = {
        host: subprocess.Popen(
            ["ssh", "-F", str(lab.ssh_config), host, command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for host in lab.hosts
    }
    errors = {host: process.communicate()[1] for host, process in processes.items()}
    failed = {
        host: errors[host].decode(errors="replace").strip()
        for host, process in processes.items()
        if process.returncode != 0
    }
    if failed:
        raise BenchError(f"`{command}` failed on {failed}")


def clean_hosts(lab: Lab) -> None:
    """Remove what labtorch's deploy created, so that the next converge starts clean."""
    ssh_all(lab, "rm -rf " + " ".join(CLEAN_PATHS))


# --- the three deploys -----------------------------------------------------------------------


@dataclass
class Sample:
    """One timed run of one kind at one N, with what pyinfra did per host (pyinfra only)."""

    n: int
    kind: str
    run: int
    measured: Measured
    log: str
    commands: dict[str, int] = field(default_factory=dict)
    uploads: dict[str, int] = field(default_factory=dict)
    command_lines: dict[str, list[str]] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    # A first converge's egress: what the mirror served (cache_bench.Egress, as a dict).
    egress: dict | None = None


def _env(lab: Lab, work: Path, **extra: str) -> dict[str, str]:
    """The environment of every timed command: the bench lab, and labtorch's fleet report
    written to the work directory rather than the repository's .labtorch/."""
    return {
        **os.environ,
        "LABTORCH_SIM_DIR": str(lab.state_dir),
        "LABTORCH_REPORT_DIR": str(work / "labtorch-report"),
        **extra,
    }


def _pyinfra_argv(counts: Path, inventory: str, deploy: str) -> list[str]:
    launcher = str(BENCH / "count_commands.py")
    return [sys.executable, launcher, "--out", str(counts), "--", inventory, deploy, "-y"]


def _check_pyinfra(measured: Measured, failed: set[str], expected: set[str], log: Path) -> None:
    """Exit status 0 with no failed host, or 1 with exactly the expected ones."""
    ok_status = 1 if expected else 0
    if measured.status != ok_status or failed != expected:
        raise BenchError(
            f"pyinfra exited {measured.status} with failed hosts {sorted(failed)} (expected "
            f"{ok_status} and {sorted(expected)}); see {log}"
        )


def run_pyinfra(
    lab: Lab,
    work: Path,
    sample: tuple[int, str, int],
    deploy: tuple[str, str],
    extra_env: dict[str, str] | None = None,
) -> Sample:
    """Time one pyinfra deploy through the counting launcher, and check how it ended."""
    n, kind, run = sample
    stem = work / f"n{n}" / f"{kind.replace(' ', '-').replace(',', '')}-{run}"
    counts_path, log = stem.with_suffix(".counts.json"), stem.with_suffix(".log")
    env = _env(lab, work, **(extra_env or {}))
    measured = measure(_pyinfra_argv(counts_path, *deploy), env, log)
    counts = json.loads(counts_path.read_text())
    expected = lab.expected_failures() if kind in (FIRST, FIRST_CACHE, NOOP) else set()
    _check_pyinfra(measured, set(counts["failed"]), expected, log)
    hosts = counts["hosts"]
    return Sample(
        n, kind, run, measured, str(log),
        commands={host: entry["commands"] for host, entry in hosts.items()},
        uploads={host: entry["uploads"] for host, entry in hosts.items()},
        command_lines={host: entry["command_lines"] for host, entry in hosts.items()},
        failed=sorted(counts["failed"]),
    )  # fmt: skip


def labtorch_deploy() -> tuple[str, str]:
    return "inventories/sim.py", "deploys/pytorch.py"


def floor_deploy() -> tuple[str, str]:
    return "bench/floor/inventory.py", "bench/floor/deploy.py"


def write_ansible_inventory(lab: Lab, path: Path) -> None:
    """The playbook's inventory, written by bench/ansible/inventory.py before any timing."""
    script = BENCH / "ansible" / "inventory.py"
    text = subprocess.run(
        [sys.executable, str(script), "--state-dir", str(lab.state_dir)],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _processes_mentioning(needle: str) -> list[int]:
    """Processes whose command line contains ``needle`` (a path only this run created)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmdline:
            found.append(int(entry.name))
    return found


def kill_control_masters(control_dir: Path) -> None:
    """Stop the ControlPersist masters one Ansible run left behind (they live 60 s otherwise
    and would make the next run warm), by PID: TERM, then KILL after a grace period."""
    masters = _processes_mentioning(str(control_dir))
    for pid in masters:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_S
    while masters and time.monotonic() < deadline:
        masters = [pid for pid in masters if Path(f"/proc/{pid}").exists()]
        time.sleep(0.05)
    for pid in masters:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(control_dir, ignore_errors=True)


def run_ansible(lab: Lab, work: Path, run: int, inventory: Path) -> Sample:
    """Time the playbook with forks = N, cold: a fresh ControlPath dir, masters killed after."""
    n = len(lab.hosts)
    log = work / f"n{n}" / f"ansible-{run}.log"
    control_dir = work / f"cp-{n}-{run}"
    shutil.rmtree(control_dir, ignore_errors=True)
    control_dir.mkdir(parents=True)
    env = _env(
        lab,
        work,
        ANSIBLE_CONFIG=str(BENCH / "ansible" / "ansible.cfg"),
        ANSIBLE_SSH_COMMON_ARGS=f"-F {lab.ssh_config}",
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(control_dir),
        ANSIBLE_LOCAL_TEMP=str(work / "ansible-local"),
    )
    argv = [
        str(BIN / "ansible-playbook"),
        *("-i", str(inventory), "-f", str(n)),
        str(BENCH / "ansible" / "playbook.yml"),
    ]
    try:
        measured = measure(argv, env, log)
    finally:
        kill_control_masters(control_dir)
    if measured.status != 0:
        raise BenchError(f"ansible-playbook exited {measured.status}; see {log}")
    return Sample(n, ANSIBLE, run, measured, str(log))


# --- one lab size ----------------------------------------------------------------------------


def _report(sample: Sample) -> None:
    m = sample.measured
    print(
        f"  N={sample.n:<3} run {sample.run}  {sample.kind:24} {m.wall_s:7.2f} s wall "
        f"{m.cpu_s:6.2f} s CPU {m.peak_rss_mib:7.0f} MiB  exit {m.status}",
        file=sys.stderr,
        flush=True,
    )


def first_converge(lab: Lab, work: Path, sample: tuple[int, str, int]) -> Sample:
    """A first converge on clean hosts, with the mirror's egress during it; through the lab
    cache (configured in the run, from nothing) for FIRST_CACHE."""
    from labtorch_sim.lab import mirror_state_dir
    from labtorch_sim.mirror import read_log

    cached = sample[1] == FIRST_CACHE
    clean_hosts(lab)
    if cached:
        clean_cache_host(str(lab.ssh_config))
    log_dir = mirror_state_dir(lab.state_dir)
    before = len(read_log(log_dir))
    found = run_pyinfra(lab, work, sample, labtorch_deploy(), CACHE_ENV if cached else None)
    found.egress = asdict(egress(read_log(log_dir)[before:]))
    return found


def one_run(lab: Lab, work: Path, run: int, with_first: bool, inventory: Path) -> list[Sample]:
    """One interleaved round: [first converge through the lab cache (N in CACHE_SIZES), first
    converge, each on clean hosts,] no-op, floor, Ansible."""
    n = len(lab.hosts)
    steps: list[Callable[[], Sample]] = []
    if with_first and n in CACHE_SIZES:
        steps.append(lambda: first_converge(lab, work, (n, FIRST_CACHE, run)))
    if with_first:
        steps.append(lambda: first_converge(lab, work, (n, FIRST, run)))
    steps += [
        lambda: run_pyinfra(lab, work, (n, NOOP, run), labtorch_deploy()),
        lambda: run_pyinfra(lab, work, (n, FLOOR, run), floor_deploy()),
        lambda: run_ansible(lab, work, run, inventory),
    ]
    samples = []
    for step in steps:
        samples.append(step())
        _report(samples[-1])
    return samples


def bench_size(
    n: int, runs: int, first_runs: int, state_dir: Path, work: Path
) -> tuple[list[Sample], dict[str, str]]:
    """Bring up N hosts, run every round, bring the lab down whatever happens; the samples and
    each host's profile."""
    print(f"== N={n}: lab up", file=sys.stderr, flush=True)
    try:
        lab = lab_up(n, state_dir)
        inventory = work / f"n{n}" / "hosts.ini"
        write_ansible_inventory(lab, inventory)
        # Untimed: the floor writes its file once, so that floor and Ansible are timed as
        # reruns, like labtorch's no-op. labtorch's hosts are cleaned before each first run.
        run_pyinfra(lab, work, (n, FLOOR, 0), floor_deploy())
        if first_runs == 0:
            # No timed first converge to bring the hosts up to date: converge them untimed,
            # so that the no-op is one.
            run_pyinfra(lab, work, (n, FIRST, 0), labtorch_deploy())
        samples = []
        for run in range(1, runs + 1):
            samples += one_run(lab, work, run, run <= first_runs, inventory)
        return samples, lab.profiles
    finally:
        print(f"== N={n}: lab down", file=sys.stderr, flush=True)
        lab_down(state_dir)


def time_plan(runs: int, work: Path) -> list[float]:
    """Wall times of ``labtorch plan`` on a saved nvidia-smi output."""
    argv = [str(BIN / "labtorch"), *PLAN_ARGS]
    walls = []
    for run in range(1, runs + 1):
        measured = measure(argv, dict(os.environ), work / f"plan-{run}.log")
        if measured.status != 0:
            raise BenchError(f"labtorch plan exited {measured.status}; see {work}/plan-{run}.log")
        walls.append(measured.wall_s)
    return walls


# --- summaries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """The medians of one kind at one N."""

    n: int
    kind: str
    runs: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    walls: tuple[float, ...]
    commands_mean: float | None
    commands_max: int | None
    # Over the hosts that converge: a failing host spends one more command on its message.
    commands_max_ok: int | None
    uploads_mean: float | None


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def make_cell(samples: list[Sample]) -> Cell:
    """Medians over the runs; remote counts from the last run (they do not vary by run)."""
    last = samples[-1]
    counted = bool(last.commands)
    commands = list(last.commands.values())
    commands_ok = [count for host, count in last.commands.items() if host not in last.failed]
    return Cell(
        n=last.n,
        kind=last.kind,
        runs=len(samples),
        wall_s=_median([s.measured.wall_s for s in samples]),
        cpu_s=_median([s.measured.cpu_s for s in samples]),
        peak_rss_mib=_median([s.measured.peak_rss_mib for s in samples]),
        walls=tuple(s.measured.wall_s for s in samples),
        commands_mean=statistics.mean(commands) if counted else None,
        commands_max=max(commands) if counted else None,
        commands_max_ok=max(commands_ok) if commands_ok else None,
        uploads_mean=statistics.mean(last.uploads.values()) if counted else None,
    )


def cells_by_size(samples: list[Sample]) -> dict[int, dict[str, Cell]]:
    grouped: dict[tuple[int, str], list[Sample]] = {}
    for sample in samples:
        grouped.setdefault((sample.n, sample.kind), []).append(sample)
    table: dict[int, dict[str, Cell]] = {}
    for (n, kind), group in sorted(grouped.items()):
        table.setdefault(n, {})[kind] = make_cell(group)
    return table


@dataclass(frozen=True)
class ProbeVerdict:
    """One target: what it asks, what was measured, and whether it is met."""

    target: str
    measured: str
    met: bool


def verdicts(table: dict[int, dict[str, Cell]], plan_s: float) -> list[ProbeVerdict]:
    """Every target of the issue, checked against the medians (reported, never asserted)."""
    found = []
    for n, cells in table.items():
        noop, floor, ansible = cells[NOOP], cells[FLOOR], cells[ANSIBLE]
        if n in TARGET_NOOP_OVER_FLOOR_AT:
            ratio = noop.wall_s / floor.wall_s
            found.append(
                ProbeVerdict(
                    f"N={n}: no-op rerun <= {TARGET_NOOP_OVER_FLOOR}x the floor",
                    f"{ratio:.2f}x ({noop.wall_s:.2f} s / {floor.wall_s:.2f} s)",
                    ratio <= TARGET_NOOP_OVER_FLOOR,
                )
            )
        speedup = ansible.wall_s / noop.wall_s
        found.append(
            ProbeVerdict(
                f"N={n}: >= {TARGET_ANSIBLE_OVER_NOOP:g}x faster than Ansible",
                f"{speedup:.1f}x ({ansible.wall_s:.2f} s / {noop.wall_s:.2f} s)",
                speedup >= TARGET_ANSIBLE_OVER_NOOP,
            )
        )
        most = noop.commands_max_ok or 0
        found.append(
            ProbeVerdict(
                f"N={n}: <= {TARGET_COMMANDS_PER_HOST} remote commands per host on a no-op",
                f"max {most} on hosts that converge ({noop.commands_max} on the failing ones, "
                f"counting their error message); mean {noop.commands_mean:.2f}",
                most <= TARGET_COMMANDS_PER_HOST,
            )
        )
    found.append(
        ProbeVerdict(
            f"`labtorch plan` < {TARGET_PLAN_S} s",
            f"{plan_s:.3f} s (median of {PLAN_RUNS})",
            plan_s < TARGET_PLAN_S,
        )
    )
    return found


# --- rendering -------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def wall_table(table: dict[int, dict[str, Cell]]) -> list[str]:
    rows = [
        "| N | labtorch first converge | labtorch no-op | floor (pyinfra) | Ansible | "
        "no-op / floor | Ansible / no-op |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, cells in table.items():
        first = cells.get(FIRST)
        noop, floor, ansible = cells[NOOP], cells[FLOOR], cells[ANSIBLE]
        first_text = (
            f"{first.wall_s:.2f} ({first.runs} run{'s' * (first.runs > 1)})" if first else "-"
        )
        rows.append(
            f"| {n} | {first_text} | {noop.wall_s:.2f} | {floor.wall_s:.2f} | "
            f"{ansible.wall_s:.2f} | {noop.wall_s / floor.wall_s:.2f}x | "
            f"{ansible.wall_s / noop.wall_s:.1f}x |"
        )
    return rows


def detail_table(table: dict[int, dict[str, Cell]]) -> list[str]:
    rows = [
        "| N | what | runs | wall s (median) | every run, s | controller CPU s | "
        "peak RSS MiB (tree) | remote commands / host (mean, max) | uploads / host |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, cells in table.items():
        for kind in (k for k in KINDS if k in cells):
            cell = cells[kind]
            walls = " / ".join(f"{wall:.2f}" for wall in cell.walls)
            commands = (
                f"{cell.commands_mean:.2f}, {cell.commands_max}"
                if cell.commands_max is not None
                else "not counted"
            )
            rows.append(
                f"| {n} | {kind} | {cell.runs} | {cell.wall_s:.2f} | {walls} | {cell.cpu_s:.2f} | "
                f"{cell.peak_rss_mib:.0f} | {commands} | {_fmt(cell.uploads_mean)} |"
            )
    return rows


def lab_cache_section(samples: list[Sample], table: dict[int, dict[str, Cell]]) -> list[str]:
    """The first converge through the lab cache beside the one without, and their egress."""
    rows = []
    for n, cells in table.items():
        if FIRST_CACHE not in cells or FIRST not in cells:
            continue
        last = {
            kind: [s for s in samples if s.n == n and s.kind == kind][-1]
            for kind in (FIRST, FIRST_CACHE)
        }
        rows.append(
            (
                n,
                cells[FIRST].wall_s,
                cells[FIRST_CACHE].wall_s,
                egress_of(last[FIRST]),
                egress_of(last[FIRST_CACHE]),
                cells[FIRST_CACHE].runs,
            )
        )
    if not rows:
        return []
    controller = max(egress_of(s).controller_mib for s in samples if s.egress)
    solving = (
        f"The controller's own requests when it solves a lock ({controller:.2f} MiB at most) "
        "are left out of both"
        if controller
        else "The controller solved no lock in these runs (the lab's locks were there already)"
    )
    return [
        "## The lab cache",
        "",
        "The first converge through the lab cache (lab01 runs nginx; configured in the same run, "
        "from nothing) beside the first converge without it, on clean hosts, median wall time; "
        "what the mirror served to the fleet during each (last run), the distinct files among "
        "it, and the egress ratio (mirror bytes over distinct bytes: 1.00 is each file once). "
        f"{solving} (bench/cache_bench.py).",
        "",
        *cache_table(rows),
    ]


def egress_of(sample: Sample) -> Egress:
    return Egress(**(sample.egress or {}))


def verdict_table(found: list[ProbeVerdict]) -> list[str]:
    rows = ["| target | measured | |", "|---|---|---|"]
    rows += [f"| {v.target} | {v.measured} | {'met' if v.met else '**missed**'} |" for v in found]
    return rows


def _groups(sample: Sample) -> dict[tuple[str, ...], list[str]]:
    """Hosts that received the same commands, keyed by those commands."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for host in sorted(sample.command_lines):
        groups.setdefault(tuple(sample.command_lines[host]), []).append(host)
    return groups


def _group_heading(hosts: list[str], sample: Sample, profiles: dict[str, str]) -> str:
    names = ", ".join(hosts[:3]) + (", ..." if len(hosts) > 3 else "")
    kinds = ", ".join(sorted({profiles.get(host, "?") for host in hosts}))
    commands, uploads = sample.commands[hosts[0]], sample.uploads[hosts[0]]
    return (
        f"- {len(hosts)} host(s) ({names}; profile {kinds}): {commands} command(s), "
        f"{uploads} upload(s)"
    )


def command_listing(samples: list[Sample], profiles: dict[str, str]) -> list[str]:
    """The remote commands each kind of host received, from the largest N's last run."""
    lines: list[str] = []
    largest = max(sample.n for sample in samples)
    for kind in (FIRST, NOOP, FLOOR):
        runs = [s for s in samples if s.n == largest and s.kind == kind]
        if not runs:
            continue
        last = runs[-1]
        lines += ["", f"**{kind}** (N={largest}, run {last.run}):", ""]
        for commands, hosts in _groups(last).items():
            lines.append(_group_heading(hosts, last, profiles))
            lines += [f"  - `{_markdown_code(line)}`" for line in commands]
    return lines


def _failures_note(samples: list[Sample]) -> str:
    """Which hosts labtorch failed, as the lab means it to (the same in every run)."""
    per_size = {s.n: len(s.failed) for s in samples if s.kind in (FIRST, NOOP)}
    counts = ", ".join(f"{failed} of {n}" for n, failed in sorted(per_size.items()))
    profiles = ", ".join(sorted(EXPECTED_FAILING_PROFILES))
    return (
        f"Every labtorch run failed, as the lab intends, exactly the hosts of profiles {profiles} "
        f"({counts} hosts), and pyinfra exited 1; the floor and Ansible failed none."
    )


def _markdown_code(line: str) -> str:
    return line.replace("`", "'").replace("|", "\\|")


def _versions() -> str:
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    packages = []
    for name in ("pyinfra", "paramiko", "ansible-core"):
        try:
            packages.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            packages.append(f"{name} (not installed)")
    # Without bytecode caches, every start compiles labtorch's modules from source.
    no_pyc = " (PYTHONDONTWRITEBYTECODE set)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else ""
    return f"Python {platform.python_version()}{no_pyc}, {', '.join(packages)}, {ssh.split(',')[0]}"


# What the benchmark measures of labtorch: a change to these while it runs mixes two versions.
MEASURED_PATHS = ("labtorch", "deploys", "inventories", "group_data")


def _tree_digest() -> str:
    """A digest of every file under the measured paths: it changes with any edit, committed
    or not."""
    digest = hashlib.sha256()
    for top in MEASURED_PATHS:
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def code_version() -> str:
    """The commit of the measured code, ``+changes`` when the tree differs from it, and the
    digest of the files themselves.

    Read-only git: ``--no-optional-locks`` keeps ``status`` from refreshing the index.
    """
    git = ["git", "--no-optional-locks", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    commit = head.stdout.strip() if head.returncode == 0 else "no git"
    changes = subprocess.run(
        [*git, "status", "--porcelain", "--", *MEASURED_PATHS], capture_output=True, text=True
    ).stdout.strip()
    return f"{commit}{' +changes' if changes else ''}, files {_tree_digest()}"


@dataclass(frozen=True)
class Context:
    """When and where the benchmark ran, and how."""

    started: str
    code_before: str
    code_after: str
    cores: int
    load_before: tuple[float, ...]
    load_after: tuple[float, ...]
    versions: str
    command: str
    runs: int
    first_runs_large: int
    elapsed_s: float


def _code_note(context: Context) -> str:
    if context.code_before == context.code_after:
        return f"Measured code: labtorch at `{context.code_before}`."
    return (
        f"**Warning: the measured code changed during the run** (`{context.code_before}` "
        f"before, `{context.code_after}` after): cells may mix two versions; run again."
    )


def render(
    context: Context,
    samples: list[Sample],
    plan_walls: list[float],
    profiles: dict[str, str],
) -> str:
    """RESULTS.md: tables of walls and ratios, targets, details and the remote commands."""
    table = cells_by_size(samples)
    plan_s = _median(plan_walls)
    found = verdicts(table, plan_s)
    load = "/".join(f"{x:.2f}" for x in context.load_before)
    load_after = "/".join(f"{x:.2f}" for x in context.load_after)
    lines = [
        "# labtorch benchmark: results",
        "",
        f"Written by `{context.command}` on {context.started}, a machine with "
        f"**{context.cores} cores**; load average (1/5/15 min) {load} before and {load_after} "
        f"after; took {context.elapsed_s / 60:.1f} min. {context.versions}.",
        "",
        _code_note(context),
        "",
        f"Median of {context.runs} runs per cell, commands interleaved run by run; the first "
        f"converge at N >= {LARGE_N} took {context.first_runs_large} run(s) only (each costs "
        "minutes on this machine). How it is measured: `bench/README.md`.",
        "",
        "## Wall times, s (median)",
        "",
        *wall_table(table),
        "",
        f"`labtorch plan {' '.join(PLAN_ARGS[1:])}`: **{plan_s:.3f} s** "
        f"(median of {len(plan_walls)}; min {min(plan_walls):.3f}, max {max(plan_walls):.3f}).",
        "",
        _failures_note(samples),
        "",
        *lab_cache_section(samples, table),
        "",
        "## Targets (reported, never asserted)",
        "",
        *verdict_table(found),
        "",
        "## Every measurement",
        "",
        *detail_table(table),
        "",
        "Controller CPU is user + system time of the command's whole process tree; peak RSS is "
        "summed over that tree. Remote commands and uploads are counted by "
        "`bench/count_commands.py` (Ansible's are not counted).",
        "",
        "## Remote commands per host, as counted",
        *command_listing(samples, profiles),
        "",
    ]
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,30,100", help="lab sizes N (default 10,30,100)")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell (default 3)")
    parser.add_argument(
        "--large-first-runs",
        type=int,
        default=1,
        metavar="R",
        help=f"first-converge runs at N >= {LARGE_N} (default 1)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: N=10, one run")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR, help="logs, counts")
    parser.add_argument("--results", type=Path, default=None, help="default bench/RESULTS.md")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: comma-separated integers, not {args.sizes!r}")
    if args.quick:
        args.sizes, args.runs = [10], 1
    if args.results is None:
        args.results = args.work_dir / "RESULTS-quick.md" if args.quick else DEFAULT_RESULTS
    if args.runs < 1 or args.large_first_runs < 0 or min(args.sizes) < 1:
        parser.error("--runs and --sizes must be at least 1, --large-first-runs at least 0")
    return args


def check_tools() -> None:
    """Fail before the lab starts when a command the benchmark runs is missing."""
    if not (BIN / "ansible-playbook").exists():
        raise BenchError(f"no {BIN}/ansible-playbook: pip install ansible-core (the bench extra)")
    if shutil.which("ssh") is None:
        raise BenchError("no ssh on the PATH: apt-get install openssh-client")


def first_runs_for(n: int, args: argparse.Namespace) -> int:
    return min(args.runs, args.large_first_runs) if n >= LARGE_N else args.runs


def run_all(args: argparse.Namespace) -> tuple[list[Sample], list[float], dict[str, str]]:
    """``labtorch plan``, then every lab size in turn; the lab's profiles for the listing."""
    # plan first, before any lab runs: it needs no lab, and its figure is tenths of a second.
    plan_walls = time_plan(PLAN_RUNS, args.work_dir)
    samples: list[Sample] = []
    profiles: dict[str, str] = {}
    for n in args.sizes:
        found, lab_profiles = bench_size(
            n, args.runs, first_runs_for(n, args), args.state_dir, args.work_dir
        )
        samples += found
        profiles.update(lab_profiles)
    return samples, plan_walls, profiles


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, clock = datetime.now(timezone.utc), time.monotonic()
    code_before = code_version()
    load_before = os.getloadavg()
    try:
        check_tools()
        args.work_dir.mkdir(parents=True, exist_ok=True)
        samples, plan_walls, profiles = run_all(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    context = Context(
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        code_before=code_before,
        code_after=code_version(),
        cores=os.cpu_count() or 0,
        load_before=load_before,
        load_after=os.getloadavg(),
        versions=_versions(),
        command=shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        runs=args.runs,
        first_runs_large=args.large_first_runs,
        elapsed_s=time.monotonic() - clock,
    )
    text = render(context, samples, plan_walls, profiles)
    (args.work_dir / "samples.json").write_text(
        json.dumps([asdict(sample) for sample in samples], indent=1) + "\n"
    )
    args.results.write_text(text)
    print(text)
    print(f"written to {args.results}; logs and counts in {args.work_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
