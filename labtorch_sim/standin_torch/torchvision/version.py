"""``torchvision.version``: fixed by the generated ``_build.py``."""

from torchvision._build import CUDA as cuda
from torchvision._build import VERSION as __version__

__all__ = ["__version__", "cuda"]
