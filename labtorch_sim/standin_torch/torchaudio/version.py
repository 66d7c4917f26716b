"""``torchaudio.version``: fixed by the generated ``_build.py``."""

from torchaudio._build import CUDA as cuda
from torchaudio._build import VERSION as __version__

__all__ = ["__version__", "cuda"]
