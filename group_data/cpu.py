"""labtorch settings for hosts without a GPU (the ``cpu`` group): the CPU build, with pip, so
that a machine without conda gets it too."""

torch_variant = "cpu"
torch_installer = "pip"
