"""Bring every targeted host to its pinned PyTorch build through the mirror.

pyinfra inventories/lab.py deploys/pytorch.py -y
"""

from labtorch.deploy.pytorch import install_pytorch

install_pytorch()
