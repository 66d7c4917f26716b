"""``torch.version``: the build's version and CUDA version (None for a CPU build)."""

from torch._build import CUDA as cuda
from torch._build import VERSION as __version__

__all__ = ["__version__", "cuda"]
