"""The lab cache on the simulated lab: which host runs it, and where it listens.

``LABTORCH_SIM_CACHE=lab01`` makes ``inventories/sim.py`` put that host in the group ``cache``,
so the deploy makes it the lab cache (``labtorch.deploy.lab_cache``): nginx (installed on this
machine by ``make system``, seen read-only in ``/usr`` by every host) runs inside that host's
namespace, on its own configuration and cache directory, started by the lab's ``systemctl``
(``labtorch_sim.systemctl``). nginx listens inside that host's network namespace on
:data:`~labtorch_sim.network.CACHE_BIND`, on a port of its own per lab: the mirror's plus 1000
(the mirror's port is unique to a running lab). Every host, and this machine, reach it at
``127.0.0.1`` on that port through the lab's relays (:mod:`labtorch_sim.network`), as hosts of a
real lab reach their cache host's address.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from urllib.parse import urlsplit

from labtorch_sim.network import CACHE_BIND

CACHE_ENV = "LABTORCH_SIM_CACHE"
PORT_OFFSET = 1000


def cache_port(mirror_url: str) -> int:
    """The lab cache's port for the lab whose mirror answers at ``mirror_url``."""
    port = urlsplit(mirror_url).port or 80
    return port + PORT_OFFSET if port + PORT_OFFSET <= 65535 else port - PORT_OFFSET


def cache_group(hosts: Sequence[str], mirror_url: str) -> tuple[list[str], dict] | None:
    """The inventory group ``cache`` when ``$LABTORCH_SIM_CACHE`` names a host of the lab: that
    host, and the settings that make it listen where the other hosts reach it."""
    name = os.environ.get(CACHE_ENV)
    if not name:
        return None
    if name not in hosts:
        raise RuntimeError(f"{CACHE_ENV}={name}: not a host of the lab ({', '.join(hosts)})")
    settings = {"torch_cache_port": cache_port(mirror_url), "torch_cache_bind": CACHE_BIND}
    return [name], settings
