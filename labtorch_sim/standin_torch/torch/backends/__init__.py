"""``torch.backends``: only cuDNN, the one backend a probe asks about."""

from torch.backends import cudnn

__all__ = ["cudnn"]
