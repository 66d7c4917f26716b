"""Run pyinfra and count, per host, what it asks of each host over SSH.

    python bench/count_commands.py --out counts.json -- inventories/sim.py deploys/pytorch.py -y

Everything after ``--`` goes to pyinfra unchanged. The launcher wraps pyinfra's SSH connector
before pyinfra starts, so the counts are what pyinfra actually did, not an estimate:

- ``commands``: remote shell commands (``SSHConnector.run_shell_command``: facts and
  operation commands alike; each is one SSH ``exec`` channel and one round trip);
- ``uploads`` / ``downloads``: files sent or fetched over SFTP (``put_file`` / ``get_file``);
- ``connects``: SSH connections opened;
- ``command_lines``: each command's first line, in order, to see what they are.

It also records the hosts pyinfra failed (``State.fail_hosts``), so that a caller can tell an
expected failure from a broken run. The JSON is written when pyinfra exits, whatever its exit
status, which is passed on unchanged.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Imported first: pyinfra_cli monkey-patches the standard library for gevent on import, and
# must do so before the connector (and paramiko) are imported below.
from pyinfra_cli.main import main as pyinfra_main  # isort: skip

from pyinfra.api.state import State
from pyinfra.connectors.ssh import SSHConnector

COUNTERS = ("commands", "uploads", "downloads", "connects")
LINE_CHARS = 160


class Counts:
    """What each host was asked to do, and which hosts failed."""

    def __init__(self) -> None:
        self.hosts: defaultdict[str, dict[str, Any]] = defaultdict(self._empty_host)
        self.failed: set[str] = set()

    @staticmethod
    def _empty_host() -> dict[str, Any]:
        return {**dict.fromkeys(COUNTERS, 0), "command_lines": []}

    def add(self, host: str, counter: str, line: str | None = None) -> None:
        entry = self.hosts[host]
        entry[counter] += 1
        if line is not None:
            entry["command_lines"].append(line)

    def to_dict(self) -> dict[str, Any]:
        return {"hosts": dict(sorted(self.hosts.items())), "failed": sorted(self.failed)}


def _first_line(command: object) -> str:
    """A command's first line, shortened: enough to recognise it in a report."""
    text = str(getattr(command, "get_raw_value", lambda: command)())
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 3] + "..."


def _counting(original: Callable[..., Any], counts: Counts, counter: str) -> Callable[..., Any]:
    """Wrap a connector method so that each call counts once for the connector's host."""

    @functools.wraps(original)
    def wrapper(self: SSHConnector, *args: Any, **kwargs: Any) -> Any:
        line = _first_line(args[0]) if counter == "commands" and args else None
        counts.add(self.host.name, counter, line)
        return original(self, *args, **kwargs)

    return wrapper


def _recording_failures(original: Callable[..., Any], counts: Counts) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(self: State, hosts_to_fail: Any, *args: Any, **kwargs: Any) -> Any:
        counts.failed.update(host.name for host in hosts_to_fail or ())
        return original(self, hosts_to_fail, *args, **kwargs)

    return wrapper


def install(counts: Counts) -> None:
    """Patch pyinfra's SSH connector and state so that every remote action lands in ``counts``."""
    for method, counter in (
        ("run_shell_command", "commands"),
        ("put_file", "uploads"),
        ("get_file", "downloads"),
        ("connect", "connects"),
    ):
        setattr(SSHConnector, method, _counting(getattr(SSHConnector, method), counts, counter))
    State.fail_hosts = _recording_failures(State.fail_hosts, counts)  # type: ignore[method-assign]


def _parse(argv: list[str]) -> tuple[Path, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("pyinfra_args", nargs=argparse.REMAINDER, help="-- then pyinfra's")
    args = parser.parse_args(argv)
    rest = args.pyinfra_args[1:] if args.pyinfra_args[:1] == ["--"] else args.pyinfra_args
    return args.out, rest


def main(argv: list[str] | None = None) -> int:
    out, pyinfra_args = _parse(sys.argv[1:] if argv is None else argv)
    counts = Counts()
    install(counts)
    sys.argv = ["pyinfra", *pyinfra_args]
    status = 0
    try:
        pyinfra_main()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        out.write_text(json.dumps(counts.to_dict(), indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
