"""pyinfra inventory of the running simulated lab (``labtorch sim up``).

    LABTORCH_SIM_DIR=/tmp/labtorch-sim pyinfra inventories/sim.py exec -y -- hostname

Groups ``gpu`` and ``cpu`` follow the hosts' profiles. Host keys are checked strictly against
the lab's own known_hosts file (written at every ``sim up``), so nothing touches ~/.ssh.

Each host takes one of three routes, by its profile, so that the lab shows them side by side;
the groups ``pytorch_channel``, ``conda_forge`` and ``pip`` name them (``--limit pip``):

- ``pytorch_channel``: the article's route, the old ``pytorch`` conda channel with
  ``pytorch-cuda`` from the ``nvidia`` channel, at labtorch's default release (2.3.1: no
  ``torch_release`` here). Hosts whose driver is too old for conda-forge's 2.7.1 builds (Volta on
  535 gets cu121; the A10G on 515 shows why it gets no CUDA build), the RTX 3090 on 525 (cu118)
  and a GPU-less host with conda (the CPU build with ``cpuonly``).
- ``conda_forge``: conda-forge's pytorch 2.7.1, on the other hosts with conda, and on the GPU
  host without conda (``bare-l40s``), to which the first converge gives Miniforge from the mirror.
- ``pip``: the 2.9.1 wheels in a venv, on hosts without conda.
"""

from labtorch_sim import default_state_dir
from labtorch_sim.cache import cache_group
from labtorch_sim.lab import HostStatus, status

# Profiles whose hosts take the pytorch channel (labtorch_sim/data/profiles.yaml).
PYTORCH_CHANNEL_PROFILES = frozenset({"volta", "old-driver", "ampere-525", "cpu-conda"})
# Profiles of GPU hosts without conda that take the conda route all the same: the deploy installs
# Miniforge from the lab's mirror first (torch_conda_bootstrap).
BOOTSTRAP_PROFILES = frozenset({"bare-l40s"})
# The settings of each route; the pytorch channel keeps labtorch's default release.
ROUTES = {
    "pytorch_channel": {"torch_installer": "conda", "torch_conda_channel": "pytorch"},
    "conda_forge": {"torch_release": "2.7.1"},
    "pip": {"torch_release": "2.9.1"},
}


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
        # The lab's locks live with the lab (its mirror's URL and port are in them).
        "torch_lock_dir": str(default_state_dir() / "locks"),
    }


def _route(host: HostStatus) -> str:
    if host.profile in BOOTSTRAP_PROFILES:
        return "conda_forge"
    if host.profile in PYTORCH_CHANNEL_PROFILES and host.conda:
        return "pytorch_channel"
    return "conda_forge" if host.conda else "pip"


def _host_data(host: HostStatus) -> dict:
    # Host data, so that the route's settings win over the gpu and cpu groups' own
    # (group_data/cpu.py installs with pip).
    return {**host.pyinfra_data(), "sim_profile": host.profile, **ROUTES[_route(host)]}


_HOSTS = _lab_hosts()
_SETTINGS = _lab_settings()
# A dict of its own per group: pyinfra adds group_data/<group>.py into the group's dict.
gpu = ([(host.name, _host_data(host)) for host in _HOSTS if host.group == "gpu"], {**_SETTINGS})
cpu = ([(host.name, _host_data(host)) for host in _HOSTS if host.group == "cpu"], {**_SETTINGS})
pytorch_channel = [host.name for host in _HOSTS if _route(host) == "pytorch_channel"]
conda_forge = [host.name for host in _HOSTS if _route(host) == "conda_forge"]
pip = [host.name for host in _HOSTS if _route(host) == "pip"]
# The lab cache: LABTORCH_SIM_CACHE=lab01 makes that host the group cache (labtorch_sim.cache).
_CACHE = cache_group([host.name for host in _HOSTS], _SETTINGS["torch_mirror_url"])
if _CACHE:
    cache = _CACHE
