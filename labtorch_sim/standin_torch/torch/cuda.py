"""``torch.cuda``: the GPUs this build can use on this host, by the rules real torch follows.

A CPU build sees no GPU. A CUDA build sees the host's GPUs only when the driver is loaded, its
kernel module matches the user-space driver (else CUDA init fails with error 803), and the
driver runs the build's CUDA version: in full when the driver's CUDA version is at least the
build's, else under CUDA minor-version compatibility (same CUDA major, the driver at least that
major's floor in :data:`MINOR_COMPAT_FLOOR`), else CUDA init fails (error 35: torch's "driver is
too old"). Under minor-version compatibility the driver cannot JIT-compile PTX made by the
build's newer toolkit, so a GPU that only the build's PTX covers fails at its first kernel
(``cudaErrorUnsupportedPtxVersion``, error 222), as real torch does.
A GPU that is visible may still have no kernel in the build: then ``is_available()`` stays True
and the first kernel launch fails, as in real torch.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache

from torch._build import ARCH_LIST, CUDA
from torch._host import Gpu, read_host

NO_KERNEL_IMAGE = "CUDA error: no kernel image is available for execution on the device"
UNSUPPORTED_PTX = "CUDA error: the provided PTX was compiled with an unsupported toolchain."
# CUDA minor-version compatibility on Linux, the least driver per CUDA major: NVIDIA's CUDA
# Compatibility guide, "Minor Version Compatibility", Table 1 (11.x: >= 450.80.02; 12.x: >= 525;
# 13.x: >= 580), with the exact 12.x driver of the CUDA release notes' Table 2 (525.60.13) as uv
# and light-the-torch quote it (shared/reference/torch-matrix.md section 2.1, sources S11-S14).
# Kept here, not read from labtorch/data: the stand-in must not agree with a mistake there.
MINOR_COMPAT_FLOOR = {11: (450, 80, 2), 12: (525, 60, 13), 13: (580,)}
_NOT_COMPILED = "Torch not compiled with CUDA enabled"
_NO_DRIVER = (
    "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and "
    "installed a driver from http://www.nvidia.com/Download/index.aspx"
)
_TOO_OLD = (
    "The NVIDIA driver on your system is too old (found version {found}). Please update your "
    "GPU driver by downloading and installing a new version from the URL: "
    "http://www.nvidia.com/Download/index.aspx Alternatively, go to: https://pytorch.org to "
    "install a PyTorch version that has been compiled with your version of the CUDA driver."
)
_MISMATCH = (
    "Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions before calling "
    "NumCudaDevices() that might have already set an error? Error 803: system has unsupported "
    "display driver / cuda driver combination"
)
_NO_DEVICE = "no CUDA-capable device is detected"
_INCOMPATIBLE = (
    "\n{name} with CUDA capability sm_{major}{minor} is not compatible with the current PyTorch "
    "installation.\nThe current PyTorch install supports CUDA capabilities {supported}.\n"
    "If you want to use the {name} GPU with PyTorch, please check the instructions at "
    "https://pytorch.org/get-started/locally/\n"
)


@dataclass(frozen=True)
class _Init:
    """What CUDA initialisation found: the usable GPUs, or the error that any use raises."""

    gpus: tuple[Gpu, ...] = ()
    error: tuple[type[Exception], str] | None = None
    warn: bool = False
    minor_compat: bool = False  # the driver runs the build only under minor-version compat


@dataclass(frozen=True)
class _CudaDeviceProperties:
    name: str
    major: int
    minor: int
    total_memory: int
    uuid: str


def _version_number(version: tuple[int, int]) -> int:
    """CUDA's integer form of a version, as the driver reports it: 12.2 -> 12020."""
    return version[0] * 1000 + version[1] * 10


def _initialise() -> _Init:
    if CUDA is None:
        return _Init(error=(AssertionError, _NOT_COMPILED))
    host = read_host()
    # A driver that is installed but not loaded fails like a missing one: libcuda finds no device.
    if host is None or not host.driver_loaded or host.cuda is None:
        return _Init(error=(RuntimeError, _NO_DRIVER))
    if host.kernel_driver != host.driver:
        return _Init(error=(RuntimeError, _MISMATCH), warn=True)
    major, minor = CUDA.split(".")
    minor_compat = host.cuda < (int(major), int(minor))
    if minor_compat and not _runs_minor_compat(int(major), host.cuda, host.driver):
        found = _version_number(host.cuda)
        return _Init(error=(RuntimeError, _TOO_OLD.format(found=found)), warn=True)
    if not host.gpus:
        return _Init(error=(RuntimeError, _NO_DEVICE))
    return _Init(gpus=host.gpus, minor_compat=minor_compat)


def _driver_key(driver: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in (driver or "0").split("."))


def _runs_minor_compat(major: int, driver_cuda: tuple[int, int], driver: str | None) -> bool:
    """A build of CUDA ``major``.x on an older driver: same major and at least the major's floor."""
    floor = MINOR_COMPAT_FLOOR.get(major)
    return driver_cuda[0] == major and floor is not None and _driver_key(driver) >= floor


@cache
def _init() -> _Init:
    init = _initialise()
    if init.warn and init.error is not None:
        # Real torch warns once, then answers False/0 instead of raising.
        warnings.warn(f"CUDA initialization: {init.error[1]}", UserWarning, stacklevel=3)
    return init


def _arch(prefix: str) -> list[tuple[int, int]]:
    """The build's SASS (``sm_``) or PTX (``compute_``) architectures as (major, minor)."""
    digits = [name[len(prefix) :] for name in ARCH_LIST if name.startswith(prefix)]
    return [(int(d[:-1]), int(d[-1])) for d in digits]


def _has_sass(capability: tuple[int, int]) -> bool:
    """SASS for X.y runs on X.z when z >= y, never across majors."""
    major, minor = capability
    return any(cc[0] == major and cc[1] <= minor for cc in _arch("sm_"))


def _has_kernel(capability: tuple[int, int]) -> bool:
    """SASS for the GPU, or PTX of an older architecture (JIT-compiled upwards)."""
    return _has_sass(capability) or any(cc <= capability for cc in _arch("compute_"))


@cache
def _warn_incompatible() -> None:
    for gpu in _init().gpus:
        if not _has_kernel(gpu.capability):
            major, minor = gpu.capability
            supported = " ".join(name for name in ARCH_LIST if name.startswith("sm_"))
            message = _INCOMPATIBLE.format(
                name=gpu.name, major=major, minor=minor, supported=supported
            )
            warnings.warn(message, UserWarning, stacklevel=4)


def _lazy_init() -> tuple[Gpu, ...]:
    """The usable GPUs; raises what real torch raises on first CUDA use when there are none."""
    init = _init()
    if init.error is not None:
        error_type, message = init.error
        raise error_type(message)
    _warn_incompatible()
    return init.gpus


def _gpu(device: object = None) -> Gpu:
    """The GPU named by ``None`` (current), an index, ``"cuda:1"`` or a ``torch.device``."""
    gpus = _lazy_init()
    if device is None:
        index = 0
    elif isinstance(device, int):
        index = device
    else:
        index = int(str(device).partition(":")[2] or 0)
    if not 0 <= index < len(gpus):
        raise AssertionError("Invalid device id")
    return gpus[index]


def launch_kernel(device: object) -> None:
    """Run a kernel on ``device``: fails when the build has no kernel for that GPU."""
    capability = _gpu(device).capability
    if not _has_kernel(capability):
        raise RuntimeError(NO_KERNEL_IMAGE)
    if _init().minor_compat and not _has_sass(capability):
        raise RuntimeError(UNSUPPORTED_PTX)


def is_available() -> bool:
    return device_count() > 0


def device_count() -> int:
    return len(_init().gpus)


def current_device() -> int:
    _lazy_init()
    return 0


def get_device_name(device: object = None) -> str:
    return _gpu(device).name


def get_device_capability(device: object = None) -> tuple[int, int]:
    return _gpu(device).capability


def get_device_properties(device: object = None) -> _CudaDeviceProperties:
    gpu = _gpu(device)
    major, minor = gpu.capability
    return _CudaDeviceProperties(gpu.name, major, minor, gpu.memory_mib * 1024 * 1024, gpu.uuid)


def get_arch_list() -> list[str]:
    """The build's architectures; empty when CUDA is unavailable, as in real torch."""
    return list(ARCH_LIST) if is_available() else []
