"""A stand-in for torchvision: its version, and the CUDA check real torchvision runs on import."""

import torch
from torchvision.version import __version__, cuda

__all__ = ["__version__"]


def _check_cuda_version() -> None:
    """Like torchvision: only a different CUDA *major* between torch and torchvision fails."""
    if cuda is None or torch.version.cuda is None:
        return
    t_major, t_minor = torch.version.cuda.split(".")[:2]
    tv_major, tv_minor = cuda.split(".")[:2]
    if t_major != tv_major:
        raise RuntimeError(
            "Detected that PyTorch and torchvision were compiled with different CUDA major "
            f"versions. PyTorch has CUDA Version={t_major}.{t_minor} and torchvision has CUDA "
            f"Version={tv_major}.{tv_minor}. Please reinstall the torchvision that matches your "
            "PyTorch install."
        )


_check_cuda_version()
