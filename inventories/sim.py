"""pyinfra inventory of the running simulated lab (``labtorch sim up``).

    LABTORCH_SIM_DIR=/tmp/labtorch-sim pyinfra inventories/sim.py exec -y -- hostname

Groups ``gpu`` and ``cpu`` follow the hosts' profiles. Host keys are checked strictly against
the lab's own known_hosts file (written at every ``sim up``), so nothing touches ~/.ssh.
"""

from labtorch_sim import default_state_dir
from labtorch_sim.lab import HostStatus, status


def _lab_hosts() -> tuple[HostStatus, ...]:
    lab = status(default_state_dir())
    down = [host.name for host in lab.hosts if not host.up]
    if not lab.hosts or down:
        what = f"hosts {', '.join(down)} are down" if down else "it has no hosts"
        raise RuntimeError(
            f"the simulated lab in {lab.state_dir} is not up ({what}): run `labtorch sim up` "
            "(or set LABTORCH_SIM_DIR to the lab's state directory)"
        )
    return lab.hosts


def _lab_settings() -> dict:
    """labtorch settings that point the deploy at the lab's own mirror; the packages there are
    for Python 3.11, Debian's python3 on every host."""
    mirror = status(default_state_dir()).mirror
    if mirror is None or not mirror.up:
        raise RuntimeError("the simulated lab's mirror is not running: run `labtorch sim up`")
    return {
        "torch_mirror_url": mirror.url,
        "torch_wheel_mirror_url": f"{mirror.url}/pytorch-wheels/{{variant}}/",
        "torch_fallback_mirrors": [mirror.fallback_url],
        "torch_python": "3.11",
    }


def _host_data(host: HostStatus) -> dict:
    return {**host.pyinfra_data(), "sim_profile": host.profile}


_HOSTS = _lab_hosts()
_SETTINGS = _lab_settings()
# The lab's mirror carries conda-forge's pytorch 2.7.1 (cpu, cuda126) and the 2.9.1 wheels.
gpu = (
    [(host.name, _host_data(host)) for host in _HOSTS if host.group == "gpu"],
    {**_SETTINGS, "torch_release": "2.7.1"},
)
cpu = (
    [(host.name, _host_data(host)) for host in _HOSTS if host.group == "cpu"],
    {**_SETTINGS, "torch_release": "2.9.1"},
)
