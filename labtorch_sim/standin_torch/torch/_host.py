"""The simulated host: its NVIDIA driver and GPUs, read from ``host.json``.

The lab writes ``/etc/labtorch-sim/host.json`` on every host with an NVIDIA driver installed;
``LABTORCH_SIM_HOST_FILE`` points elsewhere (tests on the controller). No file: no driver.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HOST_FILE_ENV = "LABTORCH_SIM_HOST_FILE"
DEFAULT_HOST_FILE = "/etc/labtorch-sim/host.json"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]
    memory_mib: int
    uuid: str


@dataclass(frozen=True)
class Host:
    driver_loaded: bool
    driver: str | None
    kernel_driver: str | None
    cuda: tuple[int, int] | None
    gpus: tuple[Gpu, ...]


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


def _gpu(entry: dict) -> Gpu:
    return Gpu(
        index=entry["index"],
        name=entry["name"],
        capability=_version(entry["capability"]),
        memory_mib=entry.get("memory_mib", 0),
        uuid=entry.get("uuid", ""),
    )


@cache
def read_host() -> Host | None:
    """This host's driver and GPUs, or None when it has no NVIDIA driver (no host file)."""
    path = Path(os.environ.get(HOST_FILE_ENV, DEFAULT_HOST_FILE))
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Host(
        driver_loaded=bool(data.get("driver_loaded")),
        driver=data.get("driver"),
        kernel_driver=data.get("kernel_driver"),
        cuda=_version(data["cuda"]) if data.get("cuda") else None,
        gpus=tuple(_gpu(entry) for entry in data.get("gpus", [])),
    )
