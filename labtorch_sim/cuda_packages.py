"""The CUDA packages of the ``nvidia`` conda channel that the ``pytorch`` channel's ``pytorch-cuda``
pulls in, for CUDA 11.8 and 12.1: real names, versions and build strings, synthetic contents.

TUNA does not mirror ``nvidia``; SUSTech does, at ``anaconda-extra/cloud/nvidia`` (mirrors.md
§2.3, §3). The simulated mirror lays the channel out there and, for labtorch's site-mirror layout
(``labtorch.data.mirrors.tuna_layout_mirror`` expects ``nvidia`` under ``anaconda/cloud``), also
at ``anaconda/cloud/nvidia``.

Where each fact was read:

- ``pytorch-cuda``'s dependencies and their constraints: pytorch/builder
  ``conda/pytorch-cuda/meta.yaml`` at commit 54941b05 (2023-04-26, "pytorch-cuda: Added
  `nvjitlink` as dependency"), the recipe of build number 5, the ``_5`` of the builds
  ``pytorch-cuda-11.8-h7e8668a_5`` and ``pytorch-cuda-12.1-ha16c6d3_5``. Its
  ``conda_build_config.yaml`` builds it for ``linux-64`` and ``win-64`` (not ``noarch``).
  The ``# [win64]`` ``*-dev`` dependencies are left out, as on linux-64.
- The versions and build strings (``0``) of the ``nvidia`` packages: what real solves of
  ``pytorch-cuda=12.1`` / ``pytorch-cuda=11.8`` with ``-c pytorch -c nvidia`` installed, as public
  ``conda list --export`` files show them (for 12.1 an env with
  ``pytorch=2.3.0=py3.10_cuda12.1_cudnn8.9.2_0`` and ``pytorch-cuda=12.1=ha16c6d3_5``; for 11.8
  one with ``pytorch=2.2.1=py3.11_cuda11.8_cudnn8.7.0_0`` and ``pytorch-cuda=11.8=h7e8668a_5``).
  ``cuda-opencl``, ``libcufile`` and ``libcurand`` are not constrained by ``pytorch-cuda``; the
  versions here are those the same exports hold.
- Which component each metapackage pulls: ``cuda-runtime`` -> ``cuda-libraries`` -> the
  libraries (``cuda-opencl`` and ``libnvjitlink`` from 12.x), as in those exports, where every
  package of the list appears and nothing else CUDA-named does. The metapackages' own version
  constraints were not read: here each pins the version the exports show (synthetic).

The payload of every package is one small file under ``share/labtorch-sim/``: the stand-in torch
needs no CUDA library, and the bytes do not matter (names, versions, constraints and hashes do).
"""

from __future__ import annotations

from labtorch_sim.condapkg import CondaPackage

CUDA_VERSIONS = ("11.8", "12.1")

# pytorch-cuda's run requirements on linux-64 (pytorch/builder@54941b05), per CUDA version.
PYTORCH_CUDA_DEPENDS: dict[str, tuple[str, ...]] = {
    "11.8": (
        "cuda-libraries >=11.8,<12.0",
        "cuda-nvtx >=11.8,<12.0",
        "libnvjpeg >=11.9.0.86,<12.0.0.28",
        "cuda-cudart >=11.8,<12.0",
        "cuda-cupti >=11.8,<12.0",
        "cuda-nvrtc >=11.8,<12.0",
        "cuda-runtime >=11.8,<12.0",
        "libcufft >=10.9.0.58,<11.0.0.21",
        "libcublas >=11.11.3.6,<12.0.1.189",
        "libcusolver >=11.4.1.48,<11.4.2.57",
        "libcusparse >=11.7.5.86,<12.0.0.76",
        "libnpp >=11.8.0.86,<12.0.0.30",
    ),
    "12.1": (
        "cuda-libraries >=12.1,<12.2",
        "cuda-nvtx >=12.1,<12.2",
        "libnvjpeg >=12.1.0.39,<12.2.0.2",
        "cuda-cudart >=12.1,<12.2",
        "cuda-cupti >=12.1,<12.2",
        "cuda-nvrtc >=12.1,<12.2",
        "cuda-runtime >=12.1,<12.2",
        "libcufft >=11.0.2.4,<11.0.2.54",
        "libcublas >=12.1.0.26,<12.1.3.1",
        "libcusolver >=11.4.4.55,<11.4.5.107",
        "libcusparse >=12.0.2.55,<12.1.0.106",
        "libnvjitlink >=12.1.105,<12.2.0",
        "libnpp >=12.0.2.50,<12.1.0.40",
    ),
}
PYTORCH_CUDA_BUILDS = {"11.8": "h7e8668a_5", "12.1": "ha16c6d3_5"}

# The nvidia packages a real solve installed, per CUDA version (public conda exports, above).
COMPONENTS: dict[str, dict[str, str]] = {
    "11.8": {
        "cuda-cudart": "11.8.89",
        "cuda-cupti": "11.8.87",
        "cuda-nvrtc": "11.8.89",
        "cuda-nvtx": "11.8.86",
        "libcublas": "11.11.3.6",
        "libcufft": "10.9.0.58",
        "libcufile": "1.9.0.20",
        "libcurand": "10.3.5.119",
        "libcusolver": "11.4.1.48",
        "libcusparse": "11.7.5.86",
        "libnpp": "11.8.0.86",
        "libnvjpeg": "11.9.0.86",
    },
    "12.1": {
        "cuda-cudart": "12.1.105",
        "cuda-cupti": "12.1.105",
        "cuda-nvrtc": "12.1.105",
        "cuda-nvtx": "12.1.105",
        "cuda-opencl": "12.4.127",
        "libcublas": "12.1.0.26",
        "libcufft": "11.0.2.4",
        "libcufile": "1.9.1.3",
        "libcurand": "10.3.5.147",
        "libcusolver": "11.4.4.55",
        "libcusparse": "12.0.2.55",
        "libnpp": "12.0.2.50",
        "libnvjitlink": "12.1.105",
        "libnvjpeg": "12.1.1.14",
    },
}
# The metapackages: cuda-runtime and cuda-libraries are versioned X.Y.0.
METAPACKAGE_VERSION = {"11.8": "11.8.0", "12.1": "12.1.0"}
# What cuda-libraries pulls (pytorch-cuda pulls cupti and nvtx itself).
_NOT_IN_LIBRARIES = frozenset({"cuda-cupti", "cuda-nvtx"})
BUILD = "0"


def _stub(name: str, version: str, depends: tuple[str, ...] = ()) -> CondaPackage:
    note = f"{name} {version}: stand-in of the nvidia channel's package, no library inside\n"
    return CondaPackage(
        name,
        version,
        BUILD,
        depends=depends,
        files={f"share/labtorch-sim/{name}-{version}": note.encode()},
    )


def nvidia_channel_packages() -> list[CondaPackage]:
    """The ``nvidia`` channel: for each CUDA version its components and the ``cuda-libraries``
    and ``cuda-runtime`` metapackages (linux-64, ``.tar.bz2``, build ``0``)."""
    packages: dict[str, CondaPackage] = {}
    for cuda in CUDA_VERSIONS:
        components = COMPONENTS[cuda]
        for name, version in components.items():
            package = _stub(name, version)
            packages.setdefault(package.filename, package)
        meta = METAPACKAGE_VERSION[cuda]
        libraries = tuple(
            f"{name} {version}"
            for name, version in sorted(components.items())
            if name not in _NOT_IN_LIBRARIES
        )
        for package in (
            _stub("cuda-libraries", meta, libraries),
            _stub("cuda-runtime", meta, (f"cuda-libraries {meta}",)),
        ):
            packages[package.filename] = package
    return sorted(packages.values(), key=lambda package: package.filename)


def pytorch_cuda_packages() -> list[CondaPackage]:
    """``pytorch-cuda`` 11.8 and 12.1 of the ``pytorch`` channel, depending on the nvidia
    channel's packages as the real builds do (linux-64)."""
    return [
        CondaPackage(
            "pytorch-cuda",
            cuda,
            PYTORCH_CUDA_BUILDS[cuda],
            build_number=5,
            depends=PYTORCH_CUDA_DEPENDS[cuda],
        )
        for cuda in CUDA_VERSIONS
    ]
