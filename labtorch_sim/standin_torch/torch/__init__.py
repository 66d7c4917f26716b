"""A stand-in for PyTorch in labtorch's simulated lab.

It answers what a probe asks real torch (version, CUDA and cuDNN versions, devices, arch list, a
tiny matmul) by the rules real torch follows, with the GPUs, driver and CUDA version read from the
simulated host's ``/etc/labtorch-sim/host.json``. What this build was built with (its version,
CUDA, cuDNN, arch list) is fixed by the generated ``torch/_build.py``. Pure stdlib.
"""

from torch import backends, cuda, version
from torch._tensor import Tensor, device, matmul, ones, zeros
from torch.version import __version__

__all__ = [
    "Tensor",
    "__version__",
    "backends",
    "cuda",
    "device",
    "matmul",
    "ones",
    "version",
    "zeros",
]
