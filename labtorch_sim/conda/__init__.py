"""A conda-compatible command for the simulated lab, built on py-rattler.

Real conda cannot be installed from PyPI, so every simulated host runs this stand-in as
``/opt/conda/bin/conda``. It reads condarc files the way conda does, resolves channel names through
``custom_channels``/``default_channels``/``channel_alias``, solves and links with rattler, and
prints conda's JSON shapes, so that labtorch drives it exactly as it drives the real thing.

Where labtorch's correctness depends on it, it behaves as real conda does (each copied behaviour
has a test in ``tests/test_sim_conda.py`` that names its source): a failed ``create`` leaves no
prefix and a failed ``install`` leaves the env as it was; ``remove`` fetches the channels'
repodata unless ``--offline``; ``$CONDARC`` and the search path are read only under conda's
names; a dependency nothing provides is reported as the configured solver words it.
"""

CONDA_VERSION = "26.7.1"
PLATFORM = "linux-64"
SUBDIRS = (PLATFORM, "noarch")
