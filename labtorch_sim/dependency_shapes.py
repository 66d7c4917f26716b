"""The dependencies of the lab's torch packages, shaped like the real ones (issue 17).

``data/dependency_shapes.yaml`` says, with where each shape was read, what a torch 2.9.1 wheel
requires (the pure-Python set, and for CUDA builds the ``nvidia-*-cu12`` wheels and triton) and
what conda-forge's pytorch 2.7.1 requires (the Python set, and for CUDA builds the CUDA runtime
libraries, cudnn, nccl and triton). This module turns it into the ``Requires-Dist`` and
``depends`` of the lab's torch packages and into stub packages (a small file each) for the
mirror to serve where the real ones live: the wheels on its PyPI and on the wheel pages, the
conda packages in the conda-forge channel. The pytorch channel's shape is
:mod:`labtorch_sim.cuda_packages`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from labtorch_sim.condapkg import CONDA, NOARCH, CondaPackage

SHAPES_FILE = Path(__file__).parent / "data" / "dependency_shapes.yaml"
NVIDIA_WHEEL_TAG = "py3-none-manylinux_2_27_x86_64"
TRITON_WHEEL_TAG = "cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64"
PURE_WHEEL_TAG = "py3-none-any"


@cache
def shapes() -> dict:
    return yaml.safe_load(SHAPES_FILE.read_text())


def _note(what: str) -> bytes:
    return f"{what}: stand-in of the real package for labtorch's simulated mirror\n".encode()


# ---- wheels ----------------------------------------------------------------------------------


def torch_wheel_requires(variant: str) -> tuple[str, ...]:
    """The ``Requires-Dist`` of the torch wheel of ``variant`` (``cpu``, ``cu126``, ``cu128``)."""
    wheel = shapes()["wheel"]
    pins = wheel["cuda"].get(variant, {})
    return (
        *wheel["requires"],
        *(f"{name}=={version}; {wheel['marker']}" for name, version in pins.items()),
    )


def dependency_wheels(variant: str) -> list[tuple[str, str, str, dict[str, bytes], tuple]]:
    """The wheels a ``variant`` torch wheel pulls on Linux x86_64 with Python 3.11, as
    ``(project, version, tag, files, requires)``: the pure-Python set, then its CUDA set."""
    wheel = shapes()["wheel"]
    found = []
    for project, entry in wheel["python"].items():
        module = project.replace("-", "_")
        files = {f"{module}/__init__.py": _note(f"{project} {entry['version']}")}
        requires = tuple(entry.get("requires", ()))
        found.append((project, entry["version"], PURE_WHEEL_TAG, files, requires))
    for project, version in wheel["cuda"].get(variant, {}).items():
        module = "triton" if project == "triton" else "nvidia/" + project.removeprefix("nvidia-")
        tag = TRITON_WHEEL_TAG if project == "triton" else NVIDIA_WHEEL_TAG
        files = {f"{module.replace('-', '_')}/__init__.py": _note(f"{project} {version}")}
        found.append((project, version, tag, files, ()))
    return found


# ---- conda-forge -----------------------------------------------------------------------------


def forge_torch_depends(kind: str) -> tuple[str, ...]:
    """What conda-forge's pytorch of ``kind`` (``cpu``, ``cuda126``) depends on besides python,
    ``__cuda`` and ``cuda-version``."""
    forge = shapes()["forge"]
    return (*forge["requires"], *forge["cuda"].get(kind, {}).get("requires", ()))


def forge_packages() -> list[CondaPackage]:
    """conda-forge's packages for those dependencies: noarch Python packages, and the CUDA
    builds' libraries (linux-64), each one small file under ``share/labtorch-sim/``."""
    forge = shapes()["forge"]
    packages = []
    for name, entry in forge["python"].items():
        version = entry["version"]
        packages.append(
            CondaPackage(
                name,
                version,
                "pyhd8ed1ab_0",
                NOARCH,
                depends=("python >=3.9", *entry.get("depends", ())),
                files={f"share/labtorch-sim/{name}-{version}": _note(f"{name} {version}")},
                extension=CONDA,
            )
        )
    seen = set()
    for kind in forge["cuda"].values():
        major, minor = kind["cuda_version"].split(".")
        pin = f"cuda-version >={major}.{minor},<{major}.{int(minor) + 1}.0a0"
        for name, version in kind["packages"].items():
            if (name, version) in seen:
                continue
            seen.add((name, version))
            component = name.startswith(tuple(forge["component_prefixes"]))
            packages.append(
                CondaPackage(
                    name,
                    version,
                    "h_sim_0",
                    depends=(pin,) if component else (),
                    files={f"share/labtorch-sim/{name}-{version}": _note(f"{name} {version}")},
                    extension=CONDA,
                )
            )
    return packages
