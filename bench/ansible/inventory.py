"""Print an Ansible INI inventory of the simulated lab: group ``lab``, one host per line.

    python bench/ansible/inventory.py --state-dir /tmp/labtorch-bench > hosts.ini

Only names: Ansible reaches each host through the lab's ``ssh_config`` (``-F``), which holds
its address, port, key and known_hosts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labtorch_sim import default_state_dir
from labtorch_sim.lab import status


def inventory_text(host_names: list[str]) -> str:
    """The INI inventory: the ``lab`` group and its hosts."""
    return "".join(f"{line}\n" for line in ["[lab]", *host_names])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=None, help="the lab's directory")
    args = parser.parse_args(argv)
    lab = status(args.state_dir or default_state_dir())
    if not lab.hosts:
        print(f"no simulated lab in {lab.state_dir}", file=sys.stderr)
        return 1
    sys.stdout.write(inventory_text([host.name for host in lab.hosts]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
