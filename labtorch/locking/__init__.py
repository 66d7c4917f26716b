"""Solving lock classes on the controller, once each, and keeping the lock directory.

The conda solve is py-rattler's (the solver and repodata gateway of pixi), with the class's
virtual packages; the pip solve is uv's ``pip compile`` for the class's platform and Python, with
hashes. Neither runs on a host: the hosts install the result with no solve
(:mod:`labtorch.rules.locks` renders it). Needs the ``lock`` extra.
"""
