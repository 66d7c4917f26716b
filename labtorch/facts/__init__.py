"""Facts: pure scripts that read a host and pure parsers of their output, plus the pyinfra
FactBase wrappers in :mod:`labtorch.facts.pyinfra_facts` (the only module here that imports pyinfra).
"""
