"""labtorch settings for hosts with NVIDIA GPUs (the ``gpu`` group of the inventory)."""

torch_variant = "auto"
