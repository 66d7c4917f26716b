"""Does a host's NVIDIA driver run a CUDA build, and under which policy (pure).

Two facts decide it:

+ the driver's "CUDA Version" (nvidia-smi's header, conda's ``__cuda``): the newest CUDA it
  supports in full. A build of that CUDA version or older runs with every feature ("strict").
+ CUDA minor-version compatibility: a driver of at least the CUDA major's floor (12.x:
  525.60.13 on Linux) runs any build of that major with a limited feature set. What it cannot
  do is JIT-compile PTX made by a newer toolkit, so a GPU that has no SASS of its own in the
  build does not run it this way ("minor", and the second step of "auto").
"""

from __future__ import annotations

from labtorch.data.compat import Compat, cuda_key, cuda_of_variant, driver_key
from labtorch.facts.nvidia_smi import SmiReport

AUTO = "auto"
STRICT = "strict"
MINOR = "minor"


def driver_os(platform: str) -> str:
    return "windows" if platform == "win-64" else "linux"


def runs_strict(
    variant: str, report: SmiReport, driver_os: str, compat: Compat
) -> tuple[bool, str]:
    """Whether the driver supports the build's CUDA version in full, and why."""
    cuda = cuda_of_variant(variant)
    floor = compat.cuda[cuda]
    driver = report.driver_version
    if report.cuda_version and cuda_key(report.cuda_version) >= cuda_key(cuda):
        return True, f"the driver supports CUDA {report.cuda_version} >= {cuda}"
    if report.cuda_version:
        return False, f"the driver supports CUDA {report.cuda_version} only, the build needs {cuda}"
    minimum = floor.full[driver_os]
    if driver and minimum and driver_key(driver) >= driver_key(minimum):
        return True, f"driver {driver} >= {minimum}, the full-support floor of CUDA {cuda}"
    return (
        False,
        f"CUDA {cuda} needs driver >= {minimum}; this host has {driver or 'no known driver'}",
    )


def runs_minor(variant: str, report: SmiReport, driver_os: str, compat: Compat) -> tuple[bool, str]:
    """Whether the driver runs the build under CUDA minor-version compatibility, and why."""
    cuda = cuda_of_variant(variant)
    minimum = compat.cuda[cuda].minor_compat[driver_os]
    driver = report.driver_version
    if driver and minimum and driver_key(driver) >= driver_key(minimum):
        return True, (
            f"driver {driver} runs CUDA {cuda} under minor-version compatibility "
            f"(needs >= {minimum}; some features are limited)"
        )
    return (
        False,
        f"CUDA {cuda} needs driver >= {minimum} even under minor-version compatibility"
        + ("" if driver else "; this host's driver version is unknown"),
    )


def driver_runs(
    variant: str, report: SmiReport, policy: str, driver_os: str, compat: Compat
) -> tuple[bool, str]:
    """Whether the host's driver runs a CUDA build under ``strict`` or ``minor``, and the fact
    that decides it. (``auto`` is ``strict`` first, then ``minor`` where no GPU needs a JIT:
    the caller knows the kernels, see :mod:`labtorch.rules.variant`.)"""
    runs, why = runs_strict(variant, report, driver_os, compat)
    if runs or policy == STRICT:
        return runs, why
    return runs_minor(variant, report, driver_os, compat)


def full_support_driver(variant: str, driver_os: str, compat: Compat) -> str:
    """The driver that runs ``variant`` with every feature: ``"575.51.03 (CUDA 12.9)"``."""
    cuda = cuda_of_variant(variant)
    minimum = compat.cuda[cuda].full[driver_os]
    return f"{minimum} or newer (CUDA {cuda})" if minimum else f"one that supports CUDA {cuda}"


def driver_need(variant: str, policy: str, driver_os: str, compat: Compat) -> str:
    cuda = cuda_of_variant(variant)
    floor = compat.cuda[cuda]
    if policy == MINOR:
        return f"driver >= {floor.minor_compat[driver_os]}"
    return f"a driver that supports CUDA {cuda} (>= {floor.full[driver_os]})"
