"""Capture the TorchProbe and TorchEnvs fact fixtures from a running simulated lab.

    python tests/pyinfra/capture_fact_fixtures.py LAB_STATE_DIR tests/pyinfra/facts

Run it on a lab where the deploy has converged (lab01: a GPU conda env; lab07: the CPU venv;
lab08: the host whose driver is not loaded), whenever the probe script or the audit's command
changes. Each fixture holds the command the fact sends (pyinfra-testing checks it), the output
the lab printed, and the fact parsed from it: review the diff, the fact is what the code parsed.
Not collected by pytest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from pyinfra.api import FactBase, StringCommand
from pyinfra_testing.util import get_command_string

from labtorch.facts.pyinfra_facts import TorchEnvs, TorchProbe


class _Literal(str):
    """Written as a YAML literal block."""


yaml.SafeDumper.add_representer(
    _Literal, lambda dumper, data: dumper.represent_scalar("tag:yaml.org,2002:str", data, "|")
)


def _run(lab: Path, host: str, command: str) -> str:
    done = subprocess.run(
        ["ssh", "-F", str(lab / "ssh_config"), "-o", "BatchMode=yes", host, command],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def capture(lab: Path, out: Path, fact: FactBase, name: str, comment: str, args: dict, host: str):
    command = get_command_string(StringCommand(fact.command(**args)))
    output = _run(lab, host, command)
    lines = output.splitlines()
    data = {
        "arg": args,
        "command": _Literal(command),
        "output": _Literal(output) if output else "",
        "fact": fact.process(lines) if lines else None,
    }
    text = f"# {comment}\n" + yaml.safe_dump(data, sort_keys=False, width=1000)
    path = out / f"facts.pyinfra_facts.{type(fact).__name__}" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(path)


def main(lab: Path, out: Path) -> None:
    driver = _run(lab, "lab01", "cat /sys/module/nvidia/version").strip()
    probes = [
        ("gpu_conda_env", "Captured on the simulated lab (lab01: 2x H100, driver 570, conda-forge "
         "2.7.1 cu126 from the lab's mirror); --keep with the loaded driver.",
         {"python": "/opt/conda/envs/torch/bin/python", "kernel_driver": driver}, "lab01"),
        ("cpu_venv", "Captured on the simulated lab (lab07: no GPU, a venv with 2.9.1+cpu from "
         "the wheel page; origins from pip's install report); no kernel driver.",
         {"python": "/opt/labtorch/venvs/torch/bin/python", "kernel_driver": None}, "lab07"),
        ("no_python", "Captured on the simulated lab (lab08: no env yet): the command prints "
         "nothing, the fact is None.",
         {"python": "/opt/conda/envs/torch/bin/python", "kernel_driver": None}, "lab08"),
    ]  # fmt: skip
    for name, comment, args, host in probes:
        capture(lab, out, TorchProbe(), name, comment, args, host)
    envs = [
        ("cpu_host_with_venv", "Captured on the simulated lab (lab07: no NVIDIA driver, no "
         "conda, one venv with torch under /opt).", "lab07"),
        ("driver_not_loaded_no_torch_env", "Captured on the simulated lab (lab08: nvidia-smi "
         "fails, driver-not-loaded; conda without a torch env).", "lab08"),
    ]  # fmt: skip
    for name, comment, host in envs:
        capture(lab, out, TorchEnvs(), name, comment, {}, host)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
