"""A stand-in for torchaudio: its version, and the CUDA check real torchaudio runs on import."""

import torch
from torchaudio.version import __version__, cuda

__all__ = ["__version__"]


def _check_cuda_version() -> None:
    """Like torchaudio: any difference in CUDA major.minor between torch and torchaudio fails."""
    if cuda is None or torch.version.cuda is None:
        return
    t_version = ".".join(torch.version.cuda.split(".")[:2])
    if t_version != cuda:
        raise RuntimeError(
            "Detected that PyTorch and TorchAudio were compiled with different CUDA versions. "
            f"PyTorch has CUDA version {t_version} whereas TorchAudio has CUDA version {cuda}. "
            "Please install the TorchAudio version that matches your PyTorch version."
        )


_check_cuda_version()
