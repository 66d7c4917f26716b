"""The deploy file ``labtorch rollback`` hands to pyinfra (pyinfra runs a file, not a module)."""

from labtorch.deploy.rollback import roll_back

roll_back()
