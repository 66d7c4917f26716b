"""This machine only: ``pyinfra inventories/local.py deploys/pytorch.py``."""

local = ["@local"]
