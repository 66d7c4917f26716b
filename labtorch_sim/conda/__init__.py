"""A conda-compatible command for the simulated lab, built on py-rattler.

Real conda cannot be installed from PyPI, so every simulated host runs this stand-in as
``/opt/conda/bin/conda``. It reads condarc files the way conda does, resolves channel names through
``custom_channels``/``default_channels``/``channel_alias``, solves and links with rattler, and
prints conda's JSON shapes, so that labtorch drives it exactly as it drives the real thing.
"""

CONDA_VERSION = "26.7.1"
PLATFORM = "linux-64"
SUBDIRS = (PLATFORM, "noarch")
