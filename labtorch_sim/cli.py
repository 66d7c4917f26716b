"""``labtorch sim up | down | status``: the simulated lab from the command line.

Exit status: 0 done; 1 the lab could not start or stop (a host that failed is named, with the
tail of its sshd log); 2 bad input, such as a profiles file that does not match the schema.

The handlers import the lab when they run: ``labtorch plan`` shares this parser and must not pay
for the lab's imports.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from labtorch.data.files import DataError
from labtorch_sim import DEFAULT_STATE_DIR, STATE_DIR_ENV, default_state_dir

if TYPE_CHECKING:
    from labtorch_sim.lab import LabStatus

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def add_sim_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``sim`` and its ``up``, ``down`` and ``status`` commands to a parser's subcommands."""
    sim = subparsers.add_parser(
        "sim",
        help="a simulated lab of GPU hosts on this machine, over real SSH (needs root)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = sim.add_subparsers(dest="sim_command", required=True)
    up = actions.add_parser(
        "up",
        help="start the lab (again), as it went down; hosts already up stay up",
        description="Start the lab. A lab that was down comes back as it went down: the same "
        "hosts, their disks, the same ports and mirror URL (when the port is free). A new lab, "
        "or one started with --fresh, is the default lab (one host per profile of its `lab` "
        "list) unless --hosts or --profiles says otherwise.",
    )
    up.add_argument("--hosts", type=int, metavar="N", help="N hosts cycling the default profiles")
    up.add_argument("--profiles", metavar="FILE", help="profiles file (schema: profiles.yaml)")
    up.add_argument(
        "--fresh",
        action="store_true",
        help="start over: every host on a new disk, and the default size unless --hosts is given",
    )
    up.set_defaults(handler=up_command)
    down = actions.add_parser("down", help="stop every process of the lab")
    down.set_defaults(handler=down_command)
    status = actions.add_parser("status", help="the lab's hosts, mirror, and what is up")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=status_command)
    for action in (up, down, status):
        action.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help=f"the lab's directory (default ${STATE_DIR_ENV} or {DEFAULT_STATE_DIR})",
        )
    return sim


def _state_dir(args: argparse.Namespace) -> Path:
    return args.state_dir or default_state_dir()


def up_command(args: argparse.Namespace) -> int:
    from labtorch_sim import lab

    started = time.monotonic()
    try:
        result = lab.start(args.hosts, args.profiles, _state_dir(args), fresh=args.fresh)
    except DataError as exc:
        return _error("up", str(exc), EXIT_BAD_INPUT)
    except lab.HostStartError as exc:
        return _error("up", f"{exc}\n--- tail of its sshd log ---\n{exc.log_tail}", EXIT_FAILED)
    except lab.LabError as exc:
        return _error("up", str(exc), EXIT_FAILED)
    print(result.hosts_note)
    if result.mirror_moved:
        print(f"labtorch sim up: warning: {result.mirror_note}", file=sys.stderr)
    else:
        print(result.mirror_note)
    print()
    print(render_status(result.status))
    elapsed = time.monotonic() - started
    print(f"\nup in {elapsed:.2f} s; ssh -F {result.status.state_dir}/ssh_config lab01")
    return EXIT_OK


def down_command(args: argparse.Namespace) -> int:
    from labtorch_sim import lab

    try:
        lab.down(_state_dir(args))
    except lab.LabError as exc:
        return _error("down", str(exc), EXIT_FAILED)
    return EXIT_OK


def status_command(args: argparse.Namespace) -> int:
    from labtorch_sim import lab

    result = lab.status(_state_dir(args))
    print(json.dumps(result.to_dict(), indent=2) if args.json else render_status(result))
    return EXIT_OK


def render_status(status: LabStatus) -> str:
    """One line per host and one for the mirror."""
    mirror = status.mirror
    lines = [f"lab in {status.state_dir}"]
    lines.append(
        f"mirror  {mirror.url}  {'up' if mirror.up else 'down'}" if mirror else "mirror  none"
    )
    lines += [
        f"{host.name:6}  {host.address}:{host.port}  {host.profile:14} {host.group:4} "
        f"{'conda' if host.conda else '-':6} {'up' if host.up else 'down'}"
        for host in status.hosts
    ]
    return "\n".join(lines)


def _error(command: str, message: str, status: int) -> int:
    print(f"labtorch sim {command}: error: {message}", file=sys.stderr)
    return status
