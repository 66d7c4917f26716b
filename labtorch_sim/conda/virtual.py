"""The virtual packages of a simulated host (``__cuda``, ``__glibc``, ...).

Real conda finds ``__cuda`` by dlopening libcuda; hosts of the simulated lab have no driver to
load, so the stand-in reads the host's ``/etc/labtorch-sim/host.json`` instead. Overrides follow
conda: ``CONDA_OVERRIDE_<NAME>`` beats condarc ``override_virtual_packages``, and an empty value
removes the package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import rattler

from labtorch_sim.conda import CONDA_VERSION

HOST_FILE = "/etc/labtorch-sim/host.json"
HOST_FILE_VARIABLE = "LABTORCH_SIM_HOST_FILE"
# Any override stops rattler from probing libcuda; the placeholder it yields is dropped below.
_NO_PROBE = rattler.VirtualPackageOverrides(cuda=rattler.Override.string("0"))


@dataclass(frozen=True)
class VirtualPackage:
    """One virtual package as ``conda info`` lists it."""

    name: str
    version: str
    build: str

    def triple(self) -> list[str]:
        return [self.name, self.version, self.build]

    def to_rattler(self) -> rattler.GenericVirtualPackage:
        return rattler.GenericVirtualPackage(
            rattler.PackageName(self.name),
            rattler.Version(self.version),
            rattler.BuildString(self.build),
        )


def host_cuda(environ: Mapping[str, str]) -> str | None:
    """The CUDA version of the host's driver, when it is loaded and matches the kernel module."""
    path = Path(environ.get(HOST_FILE_VARIABLE) or HOST_FILE)
    try:
        host = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    loaded = host.get("driver_loaded") and host.get("kernel_driver") == host.get("driver")
    return str(host["cuda"]) if loaded and host.get("cuda") else None


def _detected(environ: Mapping[str, str]) -> dict[str, VirtualPackage]:
    found = {}
    for package in rattler.VirtualPackage.detect(_NO_PROBE):
        generic = package.into_generic()
        name = generic.name.normalized
        if name != "__cuda":
            found[name] = VirtualPackage(name, str(generic.version), str(generic.build_string))
    cuda = host_cuda(environ)
    if cuda:
        found["__cuda"] = VirtualPackage("__cuda", cuda, "0")
    found["__conda"] = VirtualPackage("__conda", CONDA_VERSION, "0")
    return found


def virtual_packages(
    environ: Mapping[str, str], condarc_overrides: Mapping[str, str]
) -> list[VirtualPackage]:
    """The host's virtual packages, sorted by name, with overrides applied."""
    packages = _detected(environ)
    names = {*(n.removeprefix("__") for n in packages), *condarc_overrides, "cuda"}
    for short in names:
        variable = f"CONDA_OVERRIDE_{short.upper()}"
        value = environ.get(variable, condarc_overrides.get(short))
        if value is None:
            continue
        name = f"__{short}"
        if short == "archspec" and value:
            # conda's archspec override names the microarchitecture, which is the build string.
            packages[name] = VirtualPackage(name, "1", value)
        elif value:
            build = packages[name].build if name in packages else "0"
            packages[name] = VirtualPackage(name, value, build)
        else:
            packages.pop(name, None)
    return [packages[name] for name in sorted(packages)]
