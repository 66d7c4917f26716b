"""The floor: the least a pyinfra deploy can do on each host, one fact and one file.

    LABTORCH_SIM_DIR=/tmp/labtorch-bench pyinfra bench/floor/inventory.py bench/floor/deploy.py -y

It reads the GPUs' names and driver versions (one remote command) and writes them to
``/etc/labtorch-bench.txt``; rerun, it changes nothing. ``bench/ansible/playbook.yml`` does the
same with the same shell command, so both deploys do the same remote work.
"""

from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.operations import files

# The same command as the Ansible playbook's. A host without a GPU (no nvidia-smi, or a driver
# that is not loaded) gets an empty list rather than failing: the floor must not fail any host.
GPU_QUERY = (
    "command -v nvidia-smi >/dev/null 2>&1"
    " && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null"
    " || true"
)
PATH = "/etc/labtorch-bench.txt"


class GpuQuery(FactBase[list[str]]):
    """The host's GPUs as ``name, driver_version`` lines (none without a working driver)."""

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self) -> str:
        return GPU_QUERY

    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line.strip()]


def file_text(gpus: list[str]) -> str:
    """What the file holds: one line per GPU, the same text as the Ansible playbook writes."""
    return "".join(f"{line}\n" for line in gpus)


files.put(
    name=f"Write {PATH}",
    src=StringIO(file_text(host.get_fact(GpuQuery))),
    dest=PATH,
    mode="644",
)
