"""The simulated lab: N "machines" on this one, each a real OpenSSH server behind 127.0.0.1.

Every host is an ``sshd`` started by ``unshare --mount --uts --net`` (``reference/fleet-sim.md``,
option A, ``MODE=dirs``): its own hostname; copy-on-write overlays on ``/etc /opt /var /home
/srv``; a fresh ``/root`` and ``/usr/local`` (with the profile's fake ``nvidia-smi``); ``/usr``
read-only; the conda runtime read-only at ``/opt/labtorch-sim``; the kernel module's version
files on private tmpfs over ``/proc/driver`` and ``/sys/module``; private tmpfs on the temp
directories, mounted last so that they also hide the lab's state (keys, other hosts) from it;
and a network of its own that reaches the mirror and the lab cache only, through its relay
(:mod:`labtorch_sim.network`), which also makes its sshd answer on this machine's 127.0.0.1.

State lives in one directory (default ``/tmp/labtorch-sim``, env ``LABTORCH_SIM_DIR``)::

    lab.json            what the lab is: hosts, ports, profiles (read by status and inventories)
    keys/id_ed25519     the one client key
    known_hosts         written from the host keys at every up
    ssh_config          for ``ssh -F``
    hosts/labNN/        upper/ work/ root/ usrlocal/ kernel/, sshd.log, pid, ns, fingerprint
    runtime/            the conda stand-in's runtime, shared read-only by every host
    mirror/             the mirror's state; mirror/root/ its document root

Upper layers persist across ``down``/``up`` like a disk across a reboot; a host whose profile
changed starts again from a clean disk, and ``up --fresh`` gives every host one. The lab comes
back as it went down: the same hosts on the same ports, and the mirror on the port it had, when
that port is free (packages the hosts installed name the mirror's URL, so a mirror on another
port would make every env look as if it came from elsewhere).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from labtorch_sim import fakedriver, systemctl
from labtorch_sim.cache import cache_port
from labtorch_sim.fakedriver import HostFiles
from labtorch_sim.miniforge import build_miniforge_release
from labtorch_sim.mirror import FALLBACK, read_mirror, start_mirror, stop_mirror
from labtorch_sim.mirror_content import build_mirror_content
from labtorch_sim.network import listening_ports, relay_command
from labtorch_sim.profiles import Profile, load_profiles
from labtorch_sim.runtime import HOST_PYTHON, RUNTIME_MOUNT, build_runtime, install_conda

HIDDEN_TEMP_DIRS = ("/tmp", "/var/tmp")
ADDRESS = "127.0.0.1"
USER = "root"
SSHD = "/usr/sbin/sshd"
READY_TIMEOUT_S = 15.0
STOP_GRACE_S = 5.0
# Base ports tried in turn for a new lab; host i listens on base + i (lab01 on 2201).
BASE_PORTS = tuple(range(2200, 6500, 100))
# Ports tried in turn for a new lab's mirror: below Linux's ephemeral range (32768-60999), so that
# no client connection takes the port while the lab is down.
MIRROR_PORTS = tuple(range(8701, 8800))
OVERLAY_DIRS = ("etc", "opt", "var", "home", "srv")
USR_LOCAL_DIRS = ("bin", "etc", "games", "include", "lib", "man", "sbin", "share", "src")
_POLL_S = 0.02

# Runs inside the host's new mount and UTS namespaces; $$ becomes sshd through exec.
_HOST_INIT = r"""set -e
H=$1 h=$2 runtime=$3 mountpoint=$4
echo $$ >"$H/pid"
hostname "$h"
ip link set lo up
for d in etc opt var home srv; do
	layers="lowerdir=/$d,upperdir=$H/upper/$d,workdir=$H/work/$d"
	mount -t overlay "labtorch-$h-$d" -o "$layers" "/$d"
done
mount --bind "$H/root" /root
mount --bind /usr /usr
mount -o remount,bind,ro /usr
mount --bind "$H/usrlocal" /usr/local
mount --bind "$runtime" "$mountpoint"
mount -o remount,bind,ro "$mountpoint"
for k in proc:/proc/driver sys:/sys/module; do
	mount -t tmpfs -o mode=0755,size=1m "labtorch-$h-${k%%:*}" "${k#*:}"
	cp -R "$H/kernel/${k%%:*}/." "${k#*:}/"
	mount -o remount,ro "${k#*:}"
done
for t in /tmp /var/tmp; do
	mount -t tmpfs -o mode=1777,size=512m "labtorch-$h-tmp" "$t"
done
exec /usr/sbin/sshd -D -e
"""

_SSHD_CONFIG = """Port {port}
ListenAddress {address}
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
MaxStartups 200:30:400
MaxSessions 64
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel ERROR
"""


class LabError(Exception):
    """The lab cannot do what was asked; the message says why and what to do."""


class HostStartError(LabError):
    """A host did not come up; carries the tail of its sshd log."""

    def __init__(self, host: str, reason: str, log_tail: str) -> None:
        self.host = host
        self.log_tail = log_tail
        super().__init__(f"host {host} did not start: {reason}")


@dataclass(frozen=True)
class HostStatus:
    """One host as SSH clients reach it, and whether it is up."""

    name: str
    address: str
    port: int
    user: str
    key_file: str
    known_hosts_file: str
    profile: str
    group: str
    conda: bool
    up: bool

    def pyinfra_data(self) -> dict:
        """pyinfra's SSH settings for this host: the lab's key, and a strict host-key check
        against the lab's known_hosts (written at every ``up``), so nothing touches ~/.ssh."""
        return {
            "ssh_hostname": self.address,
            "ssh_port": self.port,
            "ssh_user": self.user,
            "ssh_key": self.key_file,
            "ssh_known_hosts_file": self.known_hosts_file,
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }


@dataclass(frozen=True)
class MirrorStatus:
    url: str
    pid: int
    up: bool

    @property
    def fallback_url(self) -> str:
        """The second mirror of the same content, as BFSU is to TUNA."""
        return self.url + FALLBACK


@dataclass(frozen=True)
class LabStatus:
    """The lab as ``sim status --json`` shows it."""

    state_dir: str
    mirror: MirrorStatus | None
    hosts: tuple[HostStatus, ...]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class UpResult:
    """What ``up`` did: the lab, how many hosts and why, and where the mirror answers.

    ``mirror_moved`` is true when the mirror could not come back on the port it had: then every
    package the hosts installed before names a URL that is no longer the mirror's.
    """

    status: LabStatus
    started: tuple[str, ...]
    hosts_note: str
    mirror_note: str
    mirror_moved: bool = False

    def messages(self) -> list[str]:
        return [self.hosts_note, self.mirror_note]


def mirror_state_dir(state_dir: Path) -> Path:
    """Where the lab's mirror keeps its state: request log, faults, pid (see ``sim.mirror``)."""
    return _State(state_dir).mirror


# --- state layout --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """Where everything of one lab lives."""

    root: Path

    @property
    def lab_json(self) -> Path:
        return self.root / "lab.json"

    @property
    def client_key(self) -> Path:
        return self.root / "keys" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def runtime(self) -> Path:
        return self.root / "runtime"

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    def host(self, name: str) -> Path:
        return self.hosts / name


@dataclass(frozen=True)
class _Host:
    """One host of the lab as planned: name, port and profile."""

    name: str
    port: int
    profile: Profile


def _check_state_dir(state_dir: Path) -> Path:
    """The absolute state directory; it must lie where the hosts' private temp dirs hide it."""
    resolved = state_dir.resolve()
    if not any(resolved.is_relative_to(temp) for temp in HIDDEN_TEMP_DIRS):
        raise LabError(
            f"state directory {resolved} must be under {' or '.join(HIDDEN_TEMP_DIRS)}: every "
            "host hides those, and with them the lab's client key and the other hosts' files"
        )
    return resolved


def _read_lab(state: _State) -> dict:
    try:
        return json.loads(state.lab_json.read_text())
    except FileNotFoundError:
        return {"hosts": []}


# --- requirements --------------------------------------------------------------------------------


def is_root() -> bool:
    return os.geteuid() == 0


def check_requirements() -> None:
    """Stop before anything is done when this machine cannot run the lab."""
    if not is_root():
        raise LabError(
            "the simulated lab needs root (mount namespaces, overlays, sshd): run as root"
        )
    if not os.access(SSHD, os.X_OK):
        raise LabError(f"no {SSHD}: apt-get install openssh-server")
    for tool, package in (
        ("unshare", "util-linux"),
        ("ip", "iproute2"),
        ("setsid", "util-linux"),
        ("ssh-keygen", "openssh-client"),
    ):
        if shutil.which(tool) is None:
            raise LabError(f"no {tool} on the PATH: apt-get install {package}")


# --- up ------------------------------------------------------------------------------------------


def up(
    n_hosts: int | None,
    profiles_file: str | Path | None,
    state_dir: Path,
    fresh: bool = False,
) -> LabStatus:
    """Start the lab (idempotent): hosts already up with the same profile are left alone.

    With neither ``n_hosts`` nor ``profiles_file`` an existing lab comes back as it was, and a
    new one (or a ``fresh`` one) gets the default lab. Raises DataError for a bad profiles file,
    LabError otherwise. :func:`start` says, besides, what it did and why.
    """
    return start(n_hosts, profiles_file, state_dir, fresh).status


def start(
    n_hosts: int | None,
    profiles_file: str | Path | None,
    state_dir: Path,
    fresh: bool = False,
) -> UpResult:
    """:func:`up`, with how many hosts it started and why, and where the mirror answers.

    ``fresh``: every host gets a new disk (what was installed on it is gone) and, unless
    ``n_hosts`` or ``profiles_file`` says otherwise, the lab has the default size.
    """
    check_requirements()
    state = _State(_check_state_dir(state_dir))
    if n_hosts is not None and n_hosts < 1:
        raise LabError(f"--hosts must be at least 1, not {n_hosts}")
    last = _read_lab(state)
    # A fresh lab keeps only the last lab's ports: everything else starts over.
    saved = {"hosts": [], **{k: last.get(k) for k in ("base_port", "mirror")}} if fresh else last
    hosts_note = _hosts_note(state, saved, n_hosts, profiles_file, fresh)
    if n_hosts is None and profiles_file is None:
        n_hosts, profiles_file = saved.get("n_hosts"), saved.get("profiles_file")
    # A bad profiles file stops here, before anything is stopped or written.
    profiles = load_profiles(profiles_file).for_hosts(n_hosts)
    if fresh:
        _wipe_hosts(state, last)
    mirror, mirror_note, moved = _prepare_state(state, saved.get("mirror"))
    if moved and fresh:
        # New disks: nothing on the hosts names the old URL.
        moved, mirror_note = False, f"mirror {mirror} (the last lab's port is in use)"
    hosts, to_start = _plan_hosts(state, saved, profiles)
    # The lab's mirror URL stays the one its hosts installed from, so that a later up goes back
    # to it once its port is free again.
    _write_lab(state, hosts, n_hosts, profiles_file, saved["mirror"] if moved else mirror)
    _write_client_files(state, hosts)
    for host in to_start:
        _launch(state, host)
    _wait_ready(state, to_start, mirror)
    started = tuple(host.name for host in to_start)
    count = f"{len(hosts)} host{'s' if len(hosts) != 1 else ''}"
    if len(started) == len(hosts):
        hosts_note = f"{count} ({hosts_note}); starting all {len(started)}"
    else:
        kept = len(hosts) - len(started)
        hosts_note = f"{count} ({hosts_note}); starting {len(started)}, {kept} already up"
    return UpResult(status(state.root), started, hosts_note, mirror_note, moved)


def _hosts_note(
    state: _State,
    saved: dict,
    n_hosts: int | None,
    profiles_file: str | Path | None,
    fresh: bool,
) -> str:
    """Why the lab has the size it gets: the arguments, the last lab's size, or the default."""
    if n_hosts is not None:
        return f"--hosts {n_hosts}"
    if profiles_file is not None:
        return f"the lab of {profiles_file}"
    if fresh:
        return "--fresh: the default lab, every host on a new disk"
    if not saved["hosts"]:
        return f"the default lab: no lab in {state.root} before"
    if saved.get("n_hosts") is not None:
        return (
            f"as the last lab was: --hosts {saved['n_hosts']}; `labtorch sim up --fresh` starts "
            "the default lab on new disks"
        )
    if saved.get("profiles_file") is not None:
        return f"as the last lab was: the lab of {saved['profiles_file']}"
    return "the default lab, as the last lab was"


def _wipe_hosts(state: _State, saved: dict) -> None:
    """Stop every host and delete its disk (``--fresh``): the next start writes new ones."""
    names = _host_names(state, saved)
    _stop_hosts(state, names)
    for name in names:
        shutil.rmtree(state.host(name), ignore_errors=True)


def _plan_hosts(
    state: _State, saved: dict, profiles: list[Profile]
) -> tuple[list[_Host], list[_Host]]:
    """All hosts of the lab and those to start, with their disks written.

    Hosts no longer planned, or whose profile changed, are stopped first.
    """
    planned = [(f"lab{i:02d}", profile) for i, profile in enumerate(profiles, start=1)]
    # A host whose profile changed is another machine: it gets a new disk.
    new_machines = {
        name
        for name, profile in planned
        if _fingerprint(state, name) not in (None, profile.fingerprint())
    }
    running = {name for name in _host_names(state, saved) if _sshd_pid(state, name)}
    keep = {name for name, _ in planned if name in running and name not in new_machines}
    # A host to start may have left processes behind (its sshd gone, its relay not): they go too.
    _stop_hosts(state, sorted((running | {name for name, _ in planned}) - keep))
    base = _base_port(saved.get("base_port"), len(planned), bool(keep))
    hosts = [_Host(name, base + i, profile) for i, (name, profile) in enumerate(planned, 1)]
    to_start = [host for host in hosts if host.name not in keep]
    _check_ports_free(to_start)
    for host in to_start:
        _prepare_host(state, host, fresh=host.name in new_machines)
    return hosts, to_start


def _prepare_state(state: _State, saved_mirror: str | None) -> tuple[str, str, bool]:
    """Directories, the client key, the conda runtime and the mirror (all idempotent).

    Returns the mirror's URL, a line that says where it answers, and whether it moved (it
    could not come back on the port it had).
    """
    for directory in (state.root, state.client_key.parent, state.hosts, state.mirror):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _keygen(state.client_key, "labtorch-sim")
    build_runtime(state.runtime)
    mirror_root = state.mirror / "root"
    build_mirror_content(mirror_root)
    build_miniforge_release(mirror_root)
    url, note, moved = _start_lab_mirror(mirror_root, state.mirror, saved_mirror)
    # sshd needs its privilege-separation directory, and nothing else creates it here.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    return url, note, moved


def _start_lab_mirror(root: Path, mirror_dir: Path, saved: str | None) -> tuple[str, str, bool]:
    """The mirror on the port the lab had (``saved``, its URL), when that port is free; a new
    lab's mirror on the first free port of :data:`MIRROR_PORTS`."""
    running = read_mirror(mirror_dir)
    if running is not None and running.root == root.resolve():
        return running.url, f"mirror {running.url}: already up", False
    saved_port = urlsplit(saved).port if saved else None
    listening = listening_ports()
    if saved_port is not None and saved_port not in listening:
        with contextlib.suppress(RuntimeError):
            # Another process may take the port between the check and the bind.
            url = start_mirror(root, mirror_dir, saved_port).url
            return (
                url,
                f"mirror {url}: the same URL as before, so the hosts' envs still count "
                "as installed from it",
                False,
            )
    port = next((p for p in MIRROR_PORTS if p not in listening), 0)
    url = start_mirror(root, mirror_dir, port).url
    if saved is None or url == saved:
        return url, f"mirror {url}", False
    note = (
        f"mirror {url}: NOT the lab's mirror URL before ({saved}): port {saved_port} is in use "
        "by another process (see: ss -ltnp). The deploy's provenance will differ: packages the "
        f"hosts installed from {saved} no longer count as from the mirror, so the probe fails "
        f"those envs. Free port {saved_port} and run `labtorch sim down` then `labtorch sim up` "
        "to get the old URL back, or `labtorch sim up --fresh` to start over on new disks."
    )
    return url, note, True


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
        )


def _host_names(state: _State, saved: dict) -> list[str]:
    """Every host the lab has a directory for, planned now or before."""
    on_disk = [path.name for path in state.hosts.iterdir()] if state.hosts.is_dir() else []
    return sorted({*on_disk, *(host["name"] for host in saved["hosts"])})


def _base_port(saved: int | None, count: int, hosts_up: bool) -> int:
    """Keep the lab's base port while hosts run on it; else the first with all ports free."""
    if saved is not None and hosts_up:
        return saved
    listening = listening_ports()
    candidates = [saved] if saved is not None else []
    for base in (*candidates, *BASE_PORTS):
        if not any(base + i in listening for i in range(1, count + 1)):
            return base
    raise LabError(f"no free range of {count} ports from {BASE_PORTS[0]} to {BASE_PORTS[-1]}")


def _check_ports_free(hosts: list[_Host]) -> None:
    listening = listening_ports()
    taken = [host for host in hosts if host.port in listening]
    if taken:
        ports = ", ".join(f"{host.port} ({host.name})" for host in taken)
        raise LabError(
            f"port(s) {ports} already in use by another process (see: ss -ltnp); stop it, or "
            "bring the whole lab down and up again to move to free ports"
        )


def _prepare_host(state: _State, host: _Host, fresh: bool) -> None:
    """Write the host's disk: a new one when it has none or changed profile, then its config."""
    directory = state.host(host.name)
    if fresh and directory.exists():
        shutil.rmtree(directory)
    if not (directory / "fingerprint").exists():
        _new_disk(directory, host.profile)
    _configure(state, directory, host)


def _new_disk(directory: Path, profile: Profile) -> None:
    for name in OVERLAY_DIRS:
        (directory / "upper" / name).mkdir(parents=True, exist_ok=True)
        (directory / "work" / name).mkdir(parents=True, exist_ok=True)
    for name in USR_LOCAL_DIRS:
        (directory / "usrlocal" / name).mkdir(parents=True, exist_ok=True)
    opt = directory / "upper" / "opt"
    (opt / RUNTIME_MOUNT.removeprefix("/opt/")).mkdir(parents=True, exist_ok=True)
    if profile.conda:
        install_conda(opt)
    shutil.copytree("/etc/skel", directory / "root", dirs_exist_ok=True)
    # sshd's StrictModes refuses keys under a home or .ssh that others can write.
    (directory / "root").chmod(0o700)


def _configure(state: _State, directory: Path, host: _Host) -> None:
    """Everything the lab owns on a host, written again at every start."""
    etc = directory / "upper" / "etc"
    (etc / "hostname").write_text(f"{host.name}\n")
    (etc / "ssh").mkdir(exist_ok=True)
    _keygen(etc / "ssh" / "ssh_host_ed25519_key", f"root@{host.name}")
    (etc / "ssh" / "sshd_config").write_text(_SSHD_CONFIG.format(port=host.port, address=ADDRESS))
    ssh_dir = directory / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    _write(ssh_dir / "authorized_keys", state.client_key.with_suffix(".pub").read_bytes(), 0o600)
    info = fakedriver.host_json(host.profile, host.name)
    if info is not None:
        (etc / "labtorch-sim").mkdir(exist_ok=True)
        (etc / "labtorch-sim" / "host.json").write_text(json.dumps(info, indent=2) + "\n")
    _replace_files(directory / "usrlocal", fakedriver.nvidia_smi_files(host.profile))
    # No init on a host: the lab's own systemctl runs services (the lab cache's nginx).
    _replace_files(directory / "usrlocal", systemctl.host_files(RUNTIME_MOUNT, HOST_PYTHON))
    proc, sys_module = fakedriver.kernel_module_files(host.profile)
    _replace_tree(directory / "kernel" / "proc", proc)
    _replace_tree(directory / "kernel" / "sys", sys_module)
    (directory / "fingerprint").write_text(host.profile.fingerprint())


def _replace_files(root: Path, files: HostFiles) -> None:
    for relative, (content, mode) in files.items():
        _write(root / relative, content, mode)


def _replace_tree(root: Path, files: HostFiles) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    _replace_files(root, files)


def _write(path: Path, content: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(mode)


def _fingerprint(state: _State, name: str) -> str | None:
    path = state.host(name) / "fingerprint"
    return path.read_text() if path.exists() else None


def _write_lab(
    state: _State,
    hosts: list[_Host],
    n_hosts: int | None,
    profiles: str | Path | None,
    mirror_url: str,
) -> None:
    lab = {
        "base_port": hosts[0].port - 1,
        "mirror": mirror_url,
        "n_hosts": n_hosts,
        "profiles_file": str(Path(profiles).resolve()) if profiles else None,
        "hosts": [
            {
                "name": host.name,
                "port": host.port,
                "profile": host.profile.name,
                "group": host.profile.group,
                "conda": host.profile.conda,
            }
            for host in hosts
        ],
    }
    state.lab_json.write_text(json.dumps(lab, indent=2) + "\n")


def _write_client_files(state: _State, hosts: list[_Host]) -> None:
    """known_hosts from the host keys (no trust on first use), and an ssh_config for ``ssh -F``."""
    known = []
    for host in hosts:
        public = state.host(host.name) / "upper/etc/ssh/ssh_host_ed25519_key.pub"
        key_type, key = public.read_text().split()[:2]
        known.append(f"[{ADDRESS}]:{host.port} {key_type} {key}\n")
    state.known_hosts.write_text("".join(known))
    config = [
        "Host lab*",
        f"  User {USER}",
        f"  IdentityFile {state.client_key}",
        "  IdentitiesOnly yes",
        "  StrictHostKeyChecking yes",
        f"  UserKnownHostsFile {state.known_hosts}",
        "  LogLevel ERROR",
    ]
    for host in hosts:
        config += [f"Host {host.name}", f"  HostName {ADDRESS}", f"  Port {host.port}"]
    state.ssh_config.write_text("\n".join(config) + "\n")


def _launch(state: _State, host: _Host) -> None:
    """Start the host's sshd, detached, in new mount and UTS namespaces."""
    directory = state.host(host.name)
    for stale in ("pid", "ns"):
        (directory / stale).unlink(missing_ok=True)
    with open(directory / "sshd.log", "wb") as log:
        done = subprocess.run(
            [
                "setsid",
                "-f",
                "unshare",
                "--mount",
                "--uts",
                "--net",
                "--propagation",
                "private",
                "sh",
                "-c",
                _HOST_INIT,
                "sh",
                str(directory),
                host.name,
                str(state.runtime),
                RUNTIME_MOUNT,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise HostStartError(host.name, "could not be launched", _log_tail(state, host.name))


def _wait_ready(state: _State, hosts: list[_Host], mirror: str) -> None:
    """Wait, all hosts in one loop, until each answers on its port; fail on the first that dies.

    A host is ready when its sshd listens inside its network namespace and its relay
    (:mod:`labtorch_sim.network`), started as soon as the sshd is, listens on this machine.
    """
    pending = {host.name: host for host in hosts}
    relays: dict[str, subprocess.Popen] = {}
    deadline = time.monotonic() + READY_TIMEOUT_S
    while pending:
        outside = listening_ports(ADDRESS)
        for name, host in list(pending.items()):
            pid = _read_pid(state.host(name) / "pid")
            if pid is not None and not _alive(pid):
                raise HostStartError(name, "its sshd exited", _log_tail(state, name))
            if pid is not None and name not in relays:
                relays[name] = _start_relay(state, host, pid, mirror)
            if name in relays and relays[name].poll() is not None:
                raise HostStartError(name, "its network relay exited", _log_tail(state, name))
            if pid is not None and host.port in outside & listening_ports(ADDRESS, pid):
                (state.host(name) / "ns").write_text(_namespace(pid) or "")
                del pending[name]
        if pending and time.monotonic() > deadline:
            name = sorted(pending)[0]
            reason = f"not listening on port {pending[name].port} after {READY_TIMEOUT_S:.0f} s"
            raise HostStartError(name, reason, _log_tail(state, name))
        if pending:
            time.sleep(_POLL_S)


def _start_relay(state: _State, host: _Host, sshd_pid: int, mirror: str) -> subprocess.Popen:
    """The host's relay, detached (it joins the host's namespaces and lives as long as it)."""
    mirror_port = urlsplit(mirror).port or 80
    command = relay_command(sshd_pid, host.port, mirror_port, cache_port(mirror), state.hosts)
    with open(state.host(host.name) / "sshd.log", "ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": _package_root()},
        )


def _package_root() -> str:
    """Where ``labtorch_sim`` is imported from, for the relay's interpreter."""
    return str(Path(__file__).resolve().parent.parent)


def _log_tail(state: _State, name: str, lines: int = 15) -> str:
    path = state.host(name) / "sshd.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


# --- processes and ports -------------------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def _namespace(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _sshd_pid(state: _State, name: str) -> int | None:
    """The pid of the host's sshd when it runs, in the namespace it was started in."""
    directory = state.host(name)
    pid = _read_pid(directory / "pid")
    if pid is None:
        return None
    try:
        if os.readlink(f"/proc/{pid}/exe") != SSHD:
            return None
    except OSError:
        return None
    saved = (directory / "ns").read_text() if (directory / "ns").exists() else None
    return pid if saved is None or _namespace(pid) == saved else None


def _lab_namespaces(state: _State, names: Iterable[str]) -> set[str]:
    """The mount namespaces of these hosts, from their sshd or as recorded at start."""
    found = set()
    for name in names:
        directory = state.host(name)
        pid = _sshd_pid(state, name)
        live = _namespace(pid) if pid else None
        recorded = (directory / "ns").read_text() if (directory / "ns").exists() else None
        found |= {ns for ns in (live, recorded) if ns}
    found.discard(_namespace("self"))
    return found


def _processes_in(namespaces: set[str]) -> list[int]:
    return [int(pid) for pid in _all_pids() if _namespace(pid) in namespaces]


def _all_pids() -> Iterator[str]:
    return (entry for entry in os.listdir("/proc") if entry.isdigit())


def _stop_hosts(state: _State, names: list[str]) -> None:
    """Stop every process of these hosts: their sshd and all that runs in their namespaces."""
    namespaces = _lab_namespaces(state, names)
    if namespaces:
        _terminate(lambda: _processes_in(namespaces))
    for name in names:
        for stale in ("pid", "ns"):
            (state.host(name) / stale).unlink(missing_ok=True)


def _terminate(find: Callable[[], list[int]]) -> None:
    """TERM, then KILL what is left after STOP_GRACE_S; return once all are gone.

    A process that is exiting may already have left its namespace (``find`` no longer lists
    it) while it still runs, so each process signalled is also waited for by its pid and start
    time (never a later process that reuses the pid).
    """
    signalled: dict[int, str | None] = {}

    def left() -> list[int]:
        for pid in find():
            signalled.setdefault(pid, _start_time(pid))
        return sorted(
            pid for pid, started in signalled.items() if _alive(pid) and _start_time(pid) == started
        )

    _signal_all(left(), signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while (remaining := left()) and time.monotonic() < deadline:
        time.sleep(_POLL_S * 2)
    _signal_all(remaining, signal.SIGKILL)
    while left():
        time.sleep(_POLL_S)


def _start_time(pid: int) -> str | None:
    """When the process started (``/proc/PID/stat`` field 22), which tells it from a later
    process with the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# --- down, status --------------------------------------------------------------------------------


def down(state_dir: Path) -> None:
    """Stop every process the lab started (hosts and what runs in them, the mirror)."""
    if not is_root():
        raise LabError("stopping the simulated lab needs root: run as root")
    state = _State(state_dir.resolve())
    _stop_hosts(state, _host_names(state, _read_lab(state)))
    if state.mirror.is_dir():
        stop_mirror(state.mirror)


def status(state_dir: Path) -> LabStatus:
    """The lab as planned at the last up, with which hosts and mirror are up now."""
    state = _State(state_dir.resolve())
    lab = _read_lab(state)
    hosts = tuple(
        HostStatus(
            name=host["name"],
            address=ADDRESS,
            port=host["port"],
            user=USER,
            key_file=str(state.client_key),
            known_hosts_file=str(state.known_hosts),
            profile=host["profile"],
            group=host["group"],
            conda=host["conda"],
            up=_sshd_pid(state, host["name"]) is not None,
        )
        for host in lab["hosts"]
    )
    return LabStatus(str(state.root), _mirror_status(state), hosts)


def _mirror_status(state: _State) -> MirrorStatus | None:
    mirror = read_mirror(state.mirror) if state.mirror.is_dir() else None
    if mirror is None:
        return None
    return MirrorStatus(mirror.url, mirror.pid, _alive(mirror.pid))
