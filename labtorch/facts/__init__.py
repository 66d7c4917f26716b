"""Facts: pure scripts that read a host and pure parsers of their output.

The pyinfra FactBase wrappers are all in :mod:`labtorch.facts.pyinfra_facts`, the only module
here that imports pyinfra.
"""
