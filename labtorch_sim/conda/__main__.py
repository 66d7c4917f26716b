"""Entry point: ``python -m labtorch_sim.conda ARGS``."""

import os
import sys

from labtorch_sim.conda.cli import main

status = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.flush()
# rattler's native threads occasionally crash the interpreter's teardown (SIGSEGV after all work
# is done); every file is closed by now, so leave without running it.
os._exit(status)
