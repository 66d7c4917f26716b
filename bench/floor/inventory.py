"""pyinfra inventory of the simulated lab for the floor deploy: every host, one group.

    LABTORCH_SIM_DIR=/tmp/labtorch-bench pyinfra bench/floor/inventory.py bench/floor/deploy.py -y

Hosts are reached exactly as labtorch's own ``inventories/sim.py`` reaches them (same key,
same strict host-key check against the lab's known_hosts), so that the two deploys differ only
in what they do on each host.
"""

from labtorch_sim import default_state_dir
from labtorch_sim.lab import status


def _lab_hosts() -> list[tuple[str, dict]]:
    lab = status(default_state_dir())
    down = [host.name for host in lab.hosts if not host.up]
    if not lab.hosts or down:
        raise RuntimeError(f"the simulated lab in {lab.state_dir} is not up (down: {down})")
    return [(host.name, host.pyinfra_data()) for host in lab.hosts]


lab = _lab_hosts()
