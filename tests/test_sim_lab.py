"""The simulated lab: real SSH to each host, its fake nvidia-smi and driver files, isolation,
status, idempotent up, the pyinfra inventory, a clean down, profile validation, and a lab that comes
back as it went down (same hosts, disks, ports and mirror URL; ``--fresh`` to start over).

The lab tests need root and openssh-server (CI runs them as root); they bring up the default
lab of 9 hosts, one per profile, in a temporary state directory under /tmp.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labhelpers import running_lab, ssh

from labtorch.data.files import DataError
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport, parse_nvidia_smi
from labtorch_sim import STATE_DIR_ENV, lab
from labtorch_sim.cache import cache_port
from labtorch_sim.cli import add_sim_parser
from labtorch_sim.profiles import Profile, load_profiles

REPO = Path(__file__).resolve().parents[1]
QUERY_FIELDS = "index,name,uuid,driver_version,memory.total,compute_cap,mig.mode.current,pci.bus_id"
PROFILES = load_profiles()

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the simulated lab needs root")


def sim(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``labtorch sim ...`` through a parser of its own (cli.py wires it in separately)."""
    parser = argparse.ArgumentParser(prog="labtorch")
    add_sim_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sim", *argv])
    status = args.handler(args)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory, "sim-lab") as state_dir:
        yield state_dir


@pytest.fixture(scope="module")
def hosts(lab_dir) -> dict[str, Profile]:
    """Host name -> its profile, as the lab reports it."""
    return {host.name: PROFILES.profiles[host.profile] for host in lab.status(lab_dir).hosts}


def hosts_with(hosts: dict[str, Profile], test) -> list[tuple[str, Profile]]:
    return [(name, profile) for name, profile in hosts.items() if test(profile)]


def working_gpu(profile: Profile) -> bool:
    return profile.has_nvidia_smi and profile.failure is None


# --- SSH and nvidia-smi --------------------------------------------------------------------------


def test_default_lab_has_one_host_per_default_profile(hosts):
    assert list(hosts) == [f"lab{i:02d}" for i in range(1, len(PROFILES.lab) + 1)]
    assert [profile.name for profile in hosts.values()] == list(PROFILES.lab)


def test_each_host_answers_with_its_own_name(lab_dir, hosts):
    for name in hosts:
        done = ssh(lab_dir, name, "hostname")
        assert (done.returncode, done.stdout.decode().strip()) == (0, name), done.stderr


@pytest.mark.parametrize(
    ("form", "command", "fields"),
    [
        ("table", "nvidia-smi", None),
        ("xml", "nvidia-smi -q -x", None),
        ("csv", f"nvidia-smi --query-gpu={QUERY_FIELDS} --format=csv", None),
        (
            "csv",
            f"nvidia-smi --query-gpu={QUERY_FIELDS} --format=csv,noheader,nounits",
            QUERY_FIELDS.split(","),
        ),
        ("list", "nvidia-smi -L", None),
        ("version", "nvidia-smi --version", None),
    ],
)
def test_nvidia_smi_answers_with_the_profile_facts(lab_dir, hosts, form, command, fields):
    for name, profile in hosts_with(hosts, working_gpu):
        done = ssh(lab_dir, name, command)
        assert done.returncode == 0, (name, done.stderr)
        report = parse_nvidia_smi(done.stdout, fields=fields)
        assert isinstance(report, SmiReport), (name, report)
        if form in profile.captures and form != "csv":
            assert done.stdout == profile.captures[form].read_bytes(), name
        assert_matches_profile(name, form, report, profile)


# What each form of nvidia-smi output carries (the real tool's): those facts must be the
# profile's, exactly; the others must be absent, not guessed. "mig" in `-L` output shows only as
# the MIG devices listed under a GPU in MIG mode.
CARRIES = {
    "table": {"driver", "cuda", "memory", "mig"},
    "xml": {"driver", "cuda", "uuid", "memory", "mig"},
    "csv": {"driver", "uuid", "memory", "mig"},
    "list": {"uuid"},
    "version": {"driver", "cuda"},
}


def assert_matches_profile(host: str, form: str, report: SmiReport, profile: Profile) -> None:
    """The output says what parsing the profile's captures directly says, field by field."""
    facts, carries = profile.facts, CARRIES[form]
    assert report.driver_version == (facts.driver if "driver" in carries else None), host
    assert report.cuda_version == (facts.cuda if "cuda" in carries else None), host
    if form == "version":
        assert report.gpus == (), host
        return
    assert len(report.gpus) == len(facts.gpus), host
    for gpu, expected in zip(report.gpus, facts.gpus, strict=True):
        if form == "table":  # the table cuts long names to its column, with "..."
            assert gpu.name.endswith("...") or gpu.name == expected.name, host
            assert expected.name.startswith(gpu.name.removesuffix("...")), host
        else:
            assert gpu.name == expected.name, host
        assert gpu.uuid == (expected.uuid if "uuid" in carries else None), host
        assert gpu.memory_mib == (expected.memory_mib if "memory" in carries else None), host
        assert str(gpu.capability) == expected.capability, host
        mig = expected.mig if "mig" in carries else (True if expected.mig else None)
        assert gpu.mig_enabled == mig, host


def test_query_gpu_shows_units_like_the_real_tool(lab_dir, hosts):
    done = ssh(lab_dir, "lab01", "nvidia-smi --query-gpu=index,memory.total --format=csv")
    assert done.stdout.decode().splitlines() == [
        "index, memory.total [MiB]",
        "0, 81559 MiB",
        "1, 81559 MiB",
    ]


def test_failing_nvidia_smi_has_the_real_output_and_status(lab_dir, hosts):
    failing = hosts_with(hosts, lambda profile: profile.failure is not None)
    assert failing
    for name, profile in failing:
        for command in ("nvidia-smi", "nvidia-smi -q -x", "nvidia-smi -L"):
            done = ssh(lab_dir, name, command)
            assert done.returncode == profile.failure.exit_status, name
            result = parse_nvidia_smi(done.stdout + done.stderr)
            assert isinstance(result, SmiFailure) and result.kind is profile.failure.kind


def test_host_without_nvidia_gpu_has_no_nvidia_smi(lab_dir, hosts):
    for name, _ in hosts_with(hosts, lambda profile: not profile.has_nvidia_smi):
        done = ssh(lab_dir, name, "nvidia-smi")
        assert done.returncode == 127
        result = parse_nvidia_smi(done.stdout + done.stderr)
        assert result.kind is SmiFailureKind.COMMAND_NOT_FOUND
        assert ssh(lab_dir, name, "test -e /etc/labtorch-sim/host.json").returncode == 1


def test_kernel_module_version_files(lab_dir, hosts):
    for name, profile in hosts.items():
        done = ssh(lab_dir, name, "cat /proc/driver/nvidia/version /sys/module/nvidia/version")
        if profile.kernel_driver is None:
            assert done.returncode != 0 and not done.stdout, name
            continue
        version = profile.kernel_driver
        lines = done.stdout.decode().splitlines()
        assert lines[0].startswith(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  ")
        assert lines[1].startswith("GCC version:  gcc version ")
        assert lines[2] == version


def test_host_json_for_the_stand_ins(lab_dir, hosts):
    for name, profile in hosts_with(hosts, lambda profile: profile.has_nvidia_smi):
        info = json.loads(ssh(lab_dir, name, "cat /etc/labtorch-sim/host.json").stdout)
        assert (info["name"], info["profile"]) == (name, profile.name)
        assert info["driver_loaded"] is profile.driver_loaded
        facts = profile.facts
        assert info["driver"] == (facts.driver if facts else None)
        expected = [gpu.uuid for gpu in facts.gpus] if facts else []
        assert [gpu["uuid"] for gpu in info["gpus"]] == expected


def test_conda_where_the_profile_has_it(lab_dir, hosts):
    for name, profile in hosts.items():
        done = ssh(lab_dir, name, "test -x /opt/conda/bin/conda && test -d /opt/labtorch-sim")
        assert (done.returncode == 0) is profile.conda, name


# --- isolation -----------------------------------------------------------------------------------


def test_files_written_on_one_host_stay_on_it(lab_dir, hosts):
    marker = f"labtorch-isolation-{os.getpid()}"
    paths = [f"/etc/{marker}", f"/opt/{marker}", f"/usr/local/{marker}", f"/root/{marker}"]
    assert ssh(lab_dir, "lab01", f"touch {' '.join(paths)}").returncode == 0
    for path in paths:
        assert not Path(path).exists()
        for other in list(hosts)[1:]:
            assert ssh(lab_dir, other, f"test -e {path}").returncode == 1, (other, path)
    assert ssh(lab_dir, "lab01", f"rm {' '.join(paths)}").returncode == 0


def test_usr_is_read_only_and_the_state_dir_hidden(lab_dir):
    done = ssh(lab_dir, "lab02", "touch /usr/bin/labtorch-zz")
    assert b"Read-only file system" in done.stderr
    assert ssh(lab_dir, "lab02", f"test -e {lab_dir}/keys").returncode == 1


def test_a_host_has_its_own_loopback_and_nothing_else(lab_dir):
    links = ssh(lab_dir, "lab03", "ip -o link show").stdout.decode().splitlines()
    assert [line.split(": ")[1] for line in links] == ["lo"]
    routes = ssh(lab_dir, "lab03", "ip route show").stdout.decode()
    assert routes == ""  # no way to any address but its own loopback's


def test_the_cache_port_is_reset_while_no_host_serves_it(lab_dir):
    """The lab cache's port, on this machine and inside a host, leads to whichever host listens on
    CACHE_BIND; with none, the connection is reset at once."""
    mirror = lab.status(lab_dir).mirror
    port = cache_port(mirror.url)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as here,
        pytest.raises(ConnectionResetError),
    ):
        here.recv(1)
    inside = "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", %d)).recv(1)'"
    assert b"ConnectionResetError" in ssh(lab_dir, "lab03", inside % port).stderr


def test_a_lost_host_loses_its_relay_and_comes_back_with_a_new_one(lab_dir):
    name = "lab04"
    pid = int((lab_dir / "hosts" / name / "pid").read_text())
    namespace = os.readlink(f"/proc/{pid}/ns/mnt")
    relays = [p for p in _pids_in(namespace) if "labtorch_sim.network" in _cmdline(p)]
    assert len(relays) == 1  # the relay is one of the host's processes
    for member in _pids_in(namespace):
        os.kill(member, signal.SIGKILL)
    for _ in range(100):
        if not any(_alive(member) for member in relays):
            break
        time.sleep(0.05)
    assert ssh(lab_dir, name, "true").returncode == 255  # nothing answers for it any more
    lab.up(None, None, lab_dir)
    assert ssh(lab_dir, name, "hostname").stdout.decode().strip() == name


def _pids_in(namespace: str) -> list[int]:
    return [int(pid) for pid in _processes_in({namespace})]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


# --- status, up again, pyinfra -------------------------------------------------------------------


def test_status_json(lab_dir, capsys):
    status, out, _ = sim(capsys, "status", "--json", "--state-dir", str(lab_dir))
    data = json.loads(out)
    assert status == 0
    assert set(data) == {"state_dir", "mirror", "hosts"}
    assert set(data["mirror"]) == {"url", "pid", "up"} and data["mirror"]["up"] is True
    assert len(data["hosts"]) == len(PROFILES.lab)
    for host in data["hosts"]:
        assert set(host) == {
            "name", "address", "port", "user", "key_file", "known_hosts_file",
            "profile", "group", "conda", "up",
        }  # fmt: skip
        assert host["up"] is True and host["address"] == "127.0.0.1"
    assert [host["group"] for host in data["hosts"]].count("cpu") == 1


def test_up_again_is_idempotent_and_quick(lab_dir):
    pids = _sshd_pids(lab_dir)
    started = time.monotonic()
    lab.up(None, None, lab_dir)
    assert time.monotonic() - started < 3
    assert _sshd_pids(lab_dir) == pids


def test_a_port_taken_by_another_process_is_refused(lab_dir):
    next_port = max(host.port for host in lab.status(lab_dir).hosts) + 1
    with socket.socket() as other:
        try:
            other.bind((lab.ADDRESS, next_port))
        except OSError:
            pytest.skip(f"port {next_port} is busy already")
        other.listen()
        extra = len(PROFILES.lab) + 1
        with pytest.raises(
            lab.LabError, match=f"port\\(s\\) {next_port} \\(lab{extra:02d}\\) already in use"
        ):
            lab.up(extra, None, lab_dir)
    assert len(lab.status(lab_dir).hosts) == len(PROFILES.lab)


def _sshd_pids(lab_dir: Path) -> dict[str, str]:
    return {path.parent.name: path.read_text() for path in (lab_dir / "hosts").glob("*/pid")}


def test_pyinfra_runs_on_every_host(lab_dir, hosts):
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "pyinfra"),
            *["inventories/sim.py", "exec", "-y", "--", "hostname"],
        ],
        cwd=REPO,
        env={**os.environ, STATE_DIR_ENV: str(lab_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in hosts:
        assert f"[{name}] {name}" in done.stdout + done.stderr


def _inventory(lab_dir: Path) -> dict[str, tuple[set[str], dict]]:
    """Each host's groups and data as pyinfra sees them (``debug-inventory``)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "pyinfra"), "inventories/sim.py", "debug-inventory"],
        cwd=REPO,
        env={**os.environ, STATE_DIR_ENV: str(lab_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    hosts = {}
    # pyinfra prints it on stderr.
    for block in done.stderr.split("\n[")[1:]:
        name = block.split("]", 1)[0]
        groups = block.split("--> Groups: ", 1)[1].split("\n", 1)[0].split(", ")
        data = json.JSONDecoder().raw_decode(block.split("--> Data:\n", 1)[1])[0]
        hosts[name] = (set(groups), data)
    return hosts


def test_inventory_puts_each_host_on_its_route(lab_dir, hosts):
    """The pytorch-channel hosts keep labtorch's default release (2.3.1, from group_data/all.py:
    the inventory sets none), next to conda-forge's 2.7.1 and pip's 2.9.1; groups gpu and cpu
    follow the profiles as before."""
    inventory = _inventory(lab_dir)
    routes = {
        "pytorch_channel": ("2.3.1", "conda", "pytorch"),
        "conda_forge": ("2.7.1", "conda", "auto"),
        "pip": ("2.9.1", "pip", "auto"),
    }
    on_route = {route: [] for route in routes}
    for name, (groups, data) in inventory.items():
        [route] = groups & set(routes)
        on_route[route].append(name)
        assert "gpu" in groups if hosts[name].group == "gpu" else "cpu" in groups
        settings = (data["torch_release"], data["torch_installer"], data["torch_conda_channel"])
        assert settings == routes[route], name
        # group_data/gpu.py and cpu.py still apply to their own groups only.
        assert data["torch_variant"] == ("cpu" if hosts[name].group == "cpu" else "auto"), name
    assert on_route == {
        "pytorch_channel": ["lab03", "lab06"],
        # lab09 has no conda: the deploy gives it Miniforge, then the conda-forge route.
        "conda_forge": ["lab01", "lab02", "lab04", "lab05", "lab08", "lab09"],
        "pip": ["lab07"],
    }


# --- down, a changed profile ---------------------------------------------------------------------


@needs_root
def test_changed_profile_restarts_that_host_and_down_leaves_nothing(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("sim-down")
    profiles = state_dir / "two.yaml"
    profiles.write_text("lab: [pascal, cpu]\n")
    try:
        lab.up(None, profiles, state_dir)
        before = _sshd_pids(state_dir)
        profiles.write_text("lab: [pascal, h100]\n")
        status = lab.up(None, profiles, state_dir)
        assert [host.profile for host in status.hosts] == ["pascal", "h100"]
        after = _sshd_pids(state_dir)
        assert after["lab01"] == before["lab01"] and after["lab02"] != before["lab02"]
        assert ssh(state_dir, "lab02", "nvidia-smi -L").returncode == 0
        namespaces = {(state_dir / f"hosts/{name}/ns").read_text() for name in after}
        ports = {host.port for host in status.hosts}
    finally:
        lab.down(state_dir)
    assert not _processes_in(namespaces)
    assert not any(_alive(int(pid)) for pid in after.values())
    assert not ports & _listening_ports()
    assert lab.status(state_dir).mirror is None
    assert not any(host.up for host in lab.status(state_dir).hosts)


def _processes_in(namespaces: set[str]) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") in namespaces:
                found.append(pid)
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie (an init that does not reap may keep those around)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def _listening_ports() -> set[int]:
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines()}


# --- refusals ------------------------------------------------------------------------------------


def test_bad_profiles_file_is_exit_2_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profiles:\n  mine:\n    group: gpus\nlab: [mine]\n")
    status, _, err = sim(capsys, "up", "--profiles", str(bad), "--state-dir", str(tmp_path / "s"))
    assert status == 2
    assert f"{bad}: profiles.mine.group" in err
    assert not (tmp_path / "s").exists()


def test_not_root_stops_before_doing_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    status, _, err = sim(capsys, "up", "--state-dir", str(tmp_path / "s"))
    assert status == 1
    assert "run as root" in err
    assert not (tmp_path / "s").exists()


def test_state_dir_outside_the_hidden_temp_dirs_is_refused(tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    status, _, err = sim(capsys, "up", "--state-dir", "/srv/labtorch-sim-test")
    assert status == 1 and "must be under /tmp" in err
    assert not Path("/srv/labtorch-sim-test").exists()


# --- profiles ------------------------------------------------------------------------------------


def test_profile_facts_come_from_parsing_the_captures():
    for profile in PROFILES.profiles.values():
        for form, path in profile.captures.items():
            report = parse_nvidia_smi(path.read_bytes())
            assert report.output_format == form
            if report.driver_version:
                assert report.driver_version == profile.facts.driver


@pytest.mark.parametrize(
    ("yaml", "key", "problem"),
    [
        ("lab: [nope]", "lab.0", "unknown profile 'nope'"),
        ("profiles: {p: {nvidia_smi: {table: missing.txt}}}\nlab: [p]",
         "profiles.p.nvidia_smi.table", "no such capture file"),
        ("profiles: {p: {nvidia_smi: {table: xml_a10g_515.105.01.xml}}}\nlab: [p]",
         "profiles.p.nvidia_smi.table", "is nvidia-smi xml output"),
        ("profiles: {p: {nvidia_smi: {failure: err_driver-not-loaded.txt, exit_status: 1}}}\n"
         "lab: [p]", "profiles.p.nvidia_smi.exit_status", "exits with 9"),
        ("profiles: {p: {nvidia_smi: {xml: xml_a10g_515.105.01.xml}, kernel_module: 515.1.2}}\n"
         "lab: [p]", "profiles.p.kernel_module", "makes nvidia-smi fail"),
        ("profiles: {p: {nvidia_smi: {table: table_h100-x2_570.133.20.txt,"
         " xml: xml_a10g_515.105.01.xml}}}\nlab: [p]", "profiles.p.nvidia_smi", "disagree"),
        ("profiles: {p: {nvidia_smi: {xml: xml_rtx4090_535.86.05.xml}}}\nlab: [p]",
         "profiles.p.nvidia_smi", "no known table layout"),
        ("profiles: {p: {conda: maybe}}\nlab: [p]", "profiles.p.conda", "true or false"),
    ],
)  # fmt: skip
def test_profiles_file_errors_name_file_and_key(tmp_path, yaml, key, problem):
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml + "\n")
    with pytest.raises(DataError) as caught:
        load_profiles(path)
    assert (caught.value.file, caught.value.key) == (str(path), key)
    assert problem in caught.value.problem


def test_hosts_cycle_through_the_default_profiles():
    names = [profile.name for profile in PROFILES.for_hosts(len(PROFILES.lab) + 3)]
    assert names == [*PROFILES.lab, *PROFILES.lab[:3]]


# --- a lab that comes back as it went down (issue 10, item 2) -----------------------------------
# One lab for these tests, in order: new (default size), resized, down and up again, up with its
# mirror's port taken, and --fresh.


@pytest.fixture(scope="module")
def restart_dir(tmp_path_factory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("the simulated lab needs root")
    state_dir = tmp_path_factory.mktemp("sim-restart")
    try:
        yield state_dir
    finally:
        lab.down(state_dir)


def _up(capsys, state_dir: Path, *argv: str) -> tuple[str, str]:
    status, out, err = sim(capsys, "up", *argv, "--state-dir", str(state_dir))
    assert status == 0, err
    return out, err


def _ports(state_dir: Path) -> dict[str, int]:
    return {host.name: host.port for host in lab.status(state_dir).hosts}


def test_a_new_lab_has_the_default_size_and_says_why(restart_dir, capsys):
    out, _ = _up(capsys, restart_dir)
    n = len(PROFILES.lab)
    assert f"{n} hosts (the default lab: no lab in {restart_dir} before); starting all {n}" in out
    mirror = lab.status(restart_dir).mirror
    assert f"mirror {mirror.url}\n" in out
    assert lab.MIRROR_PORTS[0] <= int(mirror.url.rsplit(":", 1)[1]) <= lab.MIRROR_PORTS[-1]


def test_hosts_given_is_the_reason_and_hosts_beyond_stop(restart_dir, capsys):
    out, _ = _up(capsys, restart_dir, "--hosts", "2")
    assert "2 hosts (--hosts 2); starting 0, 2 already up" in out
    assert [host.name for host in lab.status(restart_dir).hosts] == ["lab01", "lab02"]
    assert "already up" in out.splitlines()[1]


def test_down_then_up_comes_back_as_it_went_down(restart_dir, capsys):
    """Same hosts, same disks, same SSH ports and the same mirror URL: what the hosts installed
    from the mirror still names the mirror."""
    assert ssh(restart_dir, "lab01", "touch /opt/installed-before-down").returncode == 0
    before = lab.status(restart_dir)
    sim(capsys, "down", "--state-dir", str(restart_dir))
    assert lab.status(restart_dir).mirror is None
    out, err = _up(capsys, restart_dir)
    after = lab.status(restart_dir)
    assert after.mirror.url == before.mirror.url
    assert _ports(restart_dir) == {host.name: host.port for host in before.hosts}
    assert "2 hosts (as the last lab was: --hosts 2; `labtorch sim up --fresh` starts" in out
    assert "starting all 2" in out
    assert f"mirror {before.mirror.url}: the same URL as before" in out
    assert not err
    assert ssh(restart_dir, "lab01", "test -e /opt/installed-before-down").returncode == 0


def test_a_taken_mirror_port_is_reported_and_the_url_comes_back_once_free(restart_dir, capsys):
    """When the port is taken, the mirror answers elsewhere and ``up`` warns that provenance will
    differ; the lab keeps its URL, so that the next up after the port is free restores it."""
    url = lab.status(restart_dir).mirror.url
    port = int(url.rsplit(":", 1)[1])
    sim(capsys, "down", "--state-dir", str(restart_dir))
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind((lab.ADDRESS, port))
        other.listen()
        _, err = _up(capsys, restart_dir)
        moved = lab.status(restart_dir).mirror.url
    assert moved != url
    assert f"warning: mirror {moved}: NOT the lab's mirror URL before ({url})" in err
    assert f"port {port} is in use by another process" in err
    assert "The deploy's provenance will differ" in err
    assert f"packages the hosts installed from {url} no longer count as from the mirror" in err
    sim(capsys, "down", "--state-dir", str(restart_dir))
    out, err = _up(capsys, restart_dir)
    assert lab.status(restart_dir).mirror.url == url
    assert f"mirror {url}: the same URL as before" in out and not err


def test_fresh_starts_new_disks_at_the_default_size(restart_dir, capsys):
    keys = {
        name: (restart_dir / f"hosts/{name}/upper/etc/ssh/ssh_host_ed25519_key.pub").read_text()
        for name in ("lab01", "lab02")
    }
    out, _ = _up(capsys, restart_dir, "--fresh")
    n = len(PROFILES.lab)
    why = "--fresh: the default lab, every host on a new disk"
    assert f"{n} hosts ({why}); starting all {n}" in out
    status = lab.status(restart_dir)
    assert [host.profile for host in status.hosts] == list(PROFILES.lab)
    assert all(host.up for host in status.hosts)
    assert ssh(restart_dir, "lab01", "test -e /opt/installed-before-down").returncode == 1
    for name, key in keys.items():
        new = restart_dir / f"hosts/{name}/upper/etc/ssh/ssh_host_ed25519_key.pub"
        assert new.read_text() != key, name
    # The size now is the default one: an up without arguments keeps it, and says so.
    out, _ = _up(capsys, restart_dir)
    assert f"{n} hosts (the default lab, as the last lab was); starting 0, {n} already up" in out


def test_fresh_with_hosts_takes_that_size(restart_dir, capsys):
    out, _ = _up(capsys, restart_dir, "--fresh", "--hosts", "3")
    assert "3 hosts (--hosts 3); starting all 3" in out
    assert len(lab.status(restart_dir).hosts) == 3
