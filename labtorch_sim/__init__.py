"""The simulated lab: hosts over real SSH, a mirror laid out like TUNA, and stand-ins for conda and
torch. It exists for the demo, the integration tests and the benchmarks; it is not part of what
labtorch installs on a real fleet.
"""

import os
from pathlib import Path

DEFAULT_STATE_DIR = Path("/tmp/labtorch-sim")
STATE_DIR_ENV = "LABTORCH_SIM_DIR"


def default_state_dir() -> Path:
    """The lab's directory: $LABTORCH_SIM_DIR, else /tmp/labtorch-sim (hidden inside each host)."""
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)
