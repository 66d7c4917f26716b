"""``systemctl`` on the simulated hosts, which have no init: enough of it to run a service.

The lab's hosts are sshd processes in their own mount namespaces (``labtorch_sim.lab``); nothing
there is PID 1, so the real systemctl has no manager to talk to. This stand-in reads the unit
files where systemd does (``/etc/systemd/system``, ``/lib/systemd/system``,
``/usr/lib/systemd/system``) and runs their ``[Service]`` commands itself, in the host's
namespace, as systemd would for ``Type=forking`` (the daemon forks; ``PIDFile`` names it) and
``Type=simple`` (the command is the daemon; its pid is kept under ``/var/lib``):

    daemon-reload, start, stop, restart, reload, enable [--now], disable [--now],
    is-active, is-enabled, status

with systemctl's exit statuses (is-active: 0 active, 3 not; an unknown unit: 5 on start, 1 on
is-enabled). ``ExecStartPre`` lines run first; a ``-`` prefix ignores a command's failure;
``$MAINPID`` is the service's pid. Enabling links the unit into the ``.wants`` directory of each
``WantedBy=`` target, as systemd does. The lab installs it as ``/usr/local/bin/systemctl`` on
every host (:func:`host_files`); it is not part of labtorch.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

UNIT_DIRS = tuple(
    Path(path) for path in ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
)
STATE = Path("/var/lib/labtorch-sim/services")
LOGS = Path("/var/log/labtorch-sim")
READY_S = 5.0
_POLL_S = 0.05

_WRAPPER = """#!/bin/sh
# systemctl of the labtorch simulated lab: the hosts have no init, so this runs services from
# their unit files itself (labtorch_sim/systemctl.py).
PYTHONPATH={mount}/site exec {python} -m labtorch_sim.systemctl "$@"
"""


def host_files(runtime_mount: str, python: str) -> dict[str, tuple[bytes, int]]:
    """What the lab writes into each host's ``/usr/local``: ``bin/systemctl``."""
    wrapper = _WRAPPER.format(mount=runtime_mount, python=python)
    return {"bin/systemctl": (wrapper.encode(), 0o755)}


class Failed(Exception):
    """A command of the unit failed; the message is what systemctl prints, ``code`` its exit."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Unit:
    name: str
    path: Path
    service: dict[str, list[str]] = field(default_factory=dict)
    install: dict[str, list[str]] = field(default_factory=dict)

    def one(self, key: str, default: str | None = None) -> str | None:
        values = self.service.get(key)
        return values[-1] if values else default

    @property
    def pid_file(self) -> Path:
        return Path(self.one("PIDFile") or STATE / f"{self.name}.pid")


def _unit_name(name: str) -> str:
    return name if "." in name else f"{name}.service"


def _parse(name: str, path: Path) -> Unit:
    unit = Unit(name, path)
    section: dict[str, list[str]] | None = None
    lines = path.read_text().splitlines()
    joined: list[str] = []
    for line in lines:
        if joined and joined[-1].endswith("\\"):
            joined[-1] = joined[-1][:-1] + " " + line.strip()
        else:
            joined.append(line.strip())
    for line in joined:
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = {"[Service]": unit.service, "[Install]": unit.install}.get(line)
            continue
        key, sep, value = line.partition("=")
        if sep and section is not None:
            section.setdefault(key.strip(), []).append(value.strip())
    return unit


def load(name: str) -> Unit:
    name = _unit_name(name)
    for directory in UNIT_DIRS:
        path = directory / name
        if path.is_file():
            return _parse(name, path)
    raise Failed(f"Unit {name} not found.", 5)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def main_pid(unit: Unit) -> int | None:
    try:
        pid = int(unit.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _log(unit: Unit) -> Path:
    LOGS.mkdir(parents=True, exist_ok=True)
    return LOGS / f"{unit.name}.log"


def _run(unit: Unit, line: str, daemon: bool = False) -> None:
    """Run one ``Exec*=`` line; its output goes to the unit's log, and into the error."""
    ignore = line.startswith("-")
    line = line.lstrip("-@+!:")
    pid = main_pid(unit)
    argv = [word.replace("$MAINPID", str(pid or "")) for word in shlex.split(line)]
    log = _log(unit)
    start = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=daemon,
            check=False,
        )
    if done.returncode != 0 and not ignore:
        with open(log, "rb") as read:
            read.seek(start)
            output = read.read().decode(errors="replace").strip()
        raise Failed(f"{line}: exit status {done.returncode}" + (f"\n{output}" if output else ""))


def start(unit: Unit) -> None:
    if main_pid(unit):
        return
    for line in unit.service.get("ExecStartPre", []):
        _run(unit, line)
    command = unit.one("ExecStart")
    if not command:
        raise Failed(f"{unit.name} has no ExecStart")
    if unit.one("Type", "simple") == "forking":
        _run(unit, command, daemon=True)
        deadline = time.monotonic() + READY_S
        while main_pid(unit) is None:
            if time.monotonic() > deadline:
                raise Failed(f"{unit.name}: no live process in {unit.pid_file} after {READY_S} s")
            time.sleep(_POLL_S)
        return
    with open(_log(unit), "ab") as out:
        process = subprocess.Popen(
            shlex.split(command.lstrip("-@+!:")),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    STATE.mkdir(parents=True, exist_ok=True)
    unit.pid_file.write_text(f"{process.pid}\n")


def stop(unit: Unit) -> None:
    pid = main_pid(unit)
    if pid is None:
        return
    command = unit.one("ExecStop")
    if command:
        _run(unit, command)
    timeout = float(unit.one("TimeoutStopSec", "10").rstrip("s"))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        if not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    while _alive(pid):
        time.sleep(_POLL_S)


def reload(unit: Unit) -> None:
    if main_pid(unit) is None:
        raise Failed(f"Job for {unit.name} failed: the unit is not active.")
    command = unit.one("ExecReload")
    if not command:
        raise Failed(f"Failed to reload {unit.name}: Job type reload is not applicable for unit")
    _run(unit, command)


def _wants(unit: Unit) -> list[Path]:
    targets = " ".join(unit.install.get("WantedBy", [])).split()
    return [UNIT_DIRS[0] / f"{target}.wants" / unit.name for target in targets]


def enable(unit: Unit) -> None:
    for link in _wants(unit):
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(unit.path)


def disable(unit: Unit) -> None:
    for link in UNIT_DIRS[0].glob(f"*.wants/{unit.name}"):
        link.unlink()


def is_enabled(unit: Unit) -> bool:
    return any(UNIT_DIRS[0].glob(f"*.wants/{unit.name}"))


def _command(verb: str, names: list[str], now: bool) -> int:
    if verb == "daemon-reload":
        return 0
    if not names:
        raise Failed(f"Too few arguments: systemctl {verb} needs a unit", 1)
    status = 0
    for name in names:
        try:
            unit = load(name)
        except Failed:
            if verb in ("is-active", "status"):
                print("inactive")
                status = 3
                continue
            if verb == "is-enabled":
                what = f"Failed to get unit file state for {_unit_name(name)}"
                print(f"{what}: No such file or directory", file=sys.stderr)
                status = 1
                continue
            if verb in ("stop", "disable"):
                continue
            raise
        if verb == "start":
            start(unit)
        elif verb == "stop":
            stop(unit)
        elif verb == "restart":
            stop(unit)
            start(unit)
        elif verb == "reload":
            reload(unit)
        elif verb == "enable":
            enable(unit)
            if now:
                start(unit)
        elif verb == "disable":
            disable(unit)
            if now:
                stop(unit)
        elif verb in ("is-active", "status"):
            active = main_pid(unit) is not None
            print("active" if active else "inactive")
            status = status or (0 if active else 3)
        elif verb == "is-enabled":
            enabled = is_enabled(unit)
            print("enabled" if enabled else "disabled")
            status = status or (0 if enabled else 1)
        else:
            raise Failed(f"Unknown command verb {verb}.", 1)
    return status


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    now = "--now" in args
    words = [arg for arg in args if not arg.startswith("-")]
    if not words:
        print("systemctl (labtorch simulated lab): a command is needed", file=sys.stderr)
        return 1
    try:
        return _command(words[0], words[1:], now)
    except Failed as exc:
        print(str(exc), file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
