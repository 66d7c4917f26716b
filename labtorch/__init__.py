"""labtorch: the right GPU-enabled PyTorch on every machine of a lab fleet, through a mirror."""
