"""The lab cache in the benchmark: the first converge through it beside the first converge
without it, and the fleet's egress (what the mirror served) for each.

``bench/run.py`` times, at N in :data:`CACHE_SIZES`, one more first converge per round, with
``LABTORCH_SIM_CACHE=lab01``: the hosts and the cache host are cleaned first (nginx stopped, its
configuration, unit, cache and logs removed), so it includes configuring the cache. Around each
first converge the mirror's request log is read:

- **mirror MiB**: the bytes the mirror served to the fleet (the controller's own requests, when
  it solves a lock, are counted apart: they are the same with and without the cache);
- **distinct MiB**: the bytes of the distinct files among them, each counted once: what the
  fleet installs, the least that must cross the campus link;
- **egress ratio**: the first over the second. 1.0: each file crossed once. Without the cache it
  is how many hosts fetched each byte on average: N for a fleet of identical hosts; the lab's
  hosts take three routes and several CUDA builds, so it is less than N here.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

CACHE_SIZES = (10, 30)
CACHE_HOST = "lab01"
CACHE_ENV = {"LABTORCH_SIM_CACHE": CACHE_HOST}
# Everything the cache's deploy made on its host: the next first converge configures it again.
CACHE_PATHS = (
    "/etc/labtorch/cache",
    "/etc/systemd/system/labtorch-cache.service",
    "/etc/systemd/system/multi-user.target.wants/labtorch-cache.service",
    "/var/cache/labtorch-cache",
    "/var/lib/labtorch-cache",
    "/var/log/labtorch-cache",
)
CONTROLLER_AGENTS = ("labtorch-lock/", "uv/")


def clean_cache_host(ssh_config: str) -> None:
    """Stop the cache and remove it from its host (untimed)."""
    command = "systemctl stop labtorch-cache 2>/dev/null; rm -rf " + " ".join(CACHE_PATHS)
    subprocess.run(["ssh", "-F", ssh_config, CACHE_HOST, command], check=True)


@dataclass(frozen=True)
class Egress:
    """What the mirror served during one converge."""

    requests: int
    mib: float
    distinct_files: int
    distinct_mib: float
    controller_mib: float

    @property
    def ratio(self) -> float:
        return self.mib / self.distinct_mib if self.distinct_mib else 0.0


def egress(entries: list[dict]) -> Egress:
    """The egress of one converge from the mirror's log entries during it."""
    fleet, controller, distinct = [], 0, {}
    for entry in entries:
        size = int(entry.get("bytes") or 0)
        if (entry.get("user_agent") or "").startswith(CONTROLLER_AGENTS):
            controller += size
            continue
        fleet.append(size)
        path = unquote(urlsplit(entry.get("path") or "").path)
        distinct[path] = max(distinct.get(path, 0), size)
    return Egress(
        requests=len(fleet),
        mib=sum(fleet) / 2**20,
        distinct_files=sum(1 for size in distinct.values() if size),
        distinct_mib=sum(distinct.values()) / 2**20,
        controller_mib=controller / 2**20,
    )


def cache_table(rows: list[tuple[int, float, float, Egress, Egress, int]]) -> list[str]:
    """RESULTS.md's lab cache section: per N, both first converges and their egress. A row:
    N, wall without, wall with (medians), egress without and with (last run), runs."""
    lines = [
        "| N | first converge | through the lab cache | mirror MiB (requests) | "
        "through the cache | distinct MiB (files) | egress ratio | through the cache |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, plain, cached, without, with_cache, runs in rows:
        lines.append(
            f"| {n} | {plain:.2f} s | {cached:.2f} s ({runs} run{'s' * (runs > 1)}) | "
            f"{without.mib:.2f} ({without.requests}) | {with_cache.mib:.2f} "
            f"({with_cache.requests}) | {without.distinct_mib:.2f} ({without.distinct_files}) | "
            f"{without.ratio:.2f} | {with_cache.ratio:.2f} |"
        )
    return lines
