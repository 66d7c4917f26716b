"""``torch.backends.cudnn``: whether the build has cuDNN, and which.

As in real torch, both answer from the build alone, with or without a usable GPU.
"""

from torch._build import CUDNN

enabled = True


def is_available() -> bool:
    return CUDNN is not None


def version() -> int | None:
    """cuDNN's own version number: 8902 for 8.9.2, 90100 for 9.1.0; None without cuDNN."""
    return CUDNN
