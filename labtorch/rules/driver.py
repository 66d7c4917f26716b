"""Does a host's NVIDIA driver run a CUDA build, and under which policy (pure)."""

from __future__ import annotations

from labtorch.data.compat import Compat, cuda_key, cuda_of_variant, driver_key
from labtorch.facts.nvidia_smi import SmiReport


def driver_os(platform: str) -> str:
    return "windows" if platform == "win-64" else "linux"


def driver_runs(
    variant: str, report: SmiReport, policy: str, driver_os: str, compat: Compat
) -> tuple[bool, str]:
    """Whether the host's driver runs a CUDA build, and the fact that decides it."""
    cuda = cuda_of_variant(variant)
    floor = compat.cuda[cuda]
    driver = report.driver_version
    if report.cuda_version and cuda_key(report.cuda_version) >= cuda_key(cuda):
        return True, f"the driver supports CUDA {report.cuda_version} >= {cuda}"
    if policy == "minor":
        minimum = floor.minor_compat[driver_os]
        if driver and minimum and driver_key(driver) >= driver_key(minimum):
            return True, (
                f"driver {driver} runs CUDA {cuda} under minor-version compatibility "
                f"(needs >= {minimum}; some features are limited)"
            )
        return (
            False,
            f"CUDA {cuda} needs driver >= {minimum} even under minor-version compatibility",
        )
    if report.cuda_version:
        return False, f"the driver supports CUDA {report.cuda_version} only, the build needs {cuda}"
    minimum = floor.full[driver_os]
    if driver and minimum and driver_key(driver) >= driver_key(minimum):
        return True, f"driver {driver} >= {minimum}, the full-support floor of CUDA {cuda}"
    return (
        False,
        f"CUDA {cuda} needs driver >= {minimum}; this host has {driver or 'no known driver'}",
    )


def driver_need(variant: str, policy: str, driver_os: str, compat: Compat) -> str:
    cuda = cuda_of_variant(variant)
    floor = compat.cuda[cuda]
    if policy == "minor":
        return f"driver >= {floor.minor_compat[driver_os]}"
    return f"a driver that supports CUDA {cuda} (>= {floor.full[driver_os]})"
