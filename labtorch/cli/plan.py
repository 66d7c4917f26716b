"""``labtorch plan``: the answer for one machine without a fleet, and the command to run."""

from __future__ import annotations

import argparse
import json
import platform as host_platform
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from labtorch.data.compat import load_compat
from labtorch.data.mirrors import load_catalog
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport, parse_nvidia_smi
from labtorch.facts.platform import conda_platform
from labtorch.rules.commands import install_command
from labtorch.rules.model import (
    AUTO,
    CONDA_CHANNELS,
    DRIVER_POLICIES,
    INSTALLERS,
    PLATFORMS,
    HostFacts,
    Plan,
    Request,
)
from labtorch.rules.plan import plan_for_host

EXIT_PLAN = 0
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


class InputError(Exception):
    """Bad command-line input; the message says what was wrong."""


def this_platform() -> str:
    return conda_platform(host_platform.system() or sys.platform, host_platform.machine())


def _this_glibc() -> str | None:
    name, version = host_platform.libc_ver()
    return version if name == "glibc" and version else None


def _this_macos() -> str | None:
    return host_platform.mac_ver()[0] or None


def read_nvidia_smi_file(path: str) -> SmiReport | SmiFailure:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read --nvidia-smi file {path}: {exc.strerror}") from None
    result = parse_nvidia_smi(raw)
    if isinstance(result, SmiFailure) and result.kind == SmiFailureKind.UNRECOGNISED:
        raise InputError(f"{path} is not nvidia-smi output labtorch can read: {result.meaning}")
    return result


def run_local_nvidia_smi() -> SmiReport | SmiFailure | None:
    """Ask this machine's nvidia-smi; None when it is not installed."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        done = subprocess.run(
            [executable, "-q", "-x"], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"running {executable} failed: {exc}") from None
    return parse_nvidia_smi(done.stdout + done.stderr)


def _facts(args: argparse.Namespace) -> HostFacts:
    local = args.platform == this_platform()
    smi = read_nvidia_smi_file(args.nvidia_smi) if args.nvidia_smi else run_local_nvidia_smi()
    return HostFacts(
        platform=args.platform,
        glibc=_this_glibc() if local else None,
        macos=_this_macos() if local else None,
        python=None,
        nvidia_smi=smi,
    )


def _request(args: argparse.Namespace) -> Request:
    # Every field of Request has an option of the same name.
    return Request(**{field.name: getattr(args, field.name) for field in fields(Request)})


def render_plan(plan: Plan, command: str) -> str:
    head = f"torch {plan.torch_release} for {plan.platform} with {plan.installer}: "
    if plan.refused:
        head += "REFUSED"
    else:
        cuda = f"CUDA {plan.cuda}" if plan.cuda else "no CUDA"
        head += f"{plan.variant} ({cuda}), Python {plan.python}"
    lines = [head, "", "Why:"]
    lines += [f"  - {reason}" for reason in plan.reasons]
    if plan.warnings:
        lines += ["", "Warnings:"]
        lines += [f"  ! {warning}" for warning in plan.warnings]
    if not plan.refused:
        lines += ["", "Pins:"]
        lines += [f"  {pin.spec:55} from {pin.url}" for pin in (*plan.packages, *plan.toolkit)]
        lines += ["", "Install:", f"  {command}"]
    return "\n".join(lines)


def plan_command(args: argparse.Namespace) -> int:
    facts = _facts(args)
    plan = plan_for_host(facts, _request(args), load_compat(), load_catalog())
    command = install_command(plan, args.env_name)
    if args.json:
        print(
            json.dumps(
                {
                    **plan.to_dict(),
                    "torch": plan.torch.spec if plan.torch else None,
                    "command": command,
                },
                indent=2,
            )
        )
    else:
        print(render_plan(plan, command))
    return EXIT_REFUSED if plan.refused else EXIT_PLAN


def add_plan_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``plan`` to a parser's subcommands."""
    plan = subparsers.add_parser(
        "plan",
        help="which PyTorch build this machine (or an nvidia-smi output) should get, and how",
        description="Plan the PyTorch build for one machine and print the install command. "
        "Exit status: 0 a plan, 3 a refusal, 2 bad input.",
    )
    plan.add_argument("--torch", required=True, help="release, e.g. 2.3.1 (or 2.3: newest patch)")
    plan.add_argument("--nvidia-smi", metavar="FILE", help="saved nvidia-smi output (any form)")
    plan.add_argument("--python", help="Python version of the env, e.g. 3.12")
    plan.add_argument("--platform", choices=PLATFORMS, default=this_platform())
    plan.add_argument("--installer", choices=INSTALLERS, default="conda")
    plan.add_argument("--variant", default=AUTO, help="auto, cpu, or a CUDA variant such as cu121")
    plan.add_argument(
        "--driver-policy",
        choices=DRIVER_POLICIES,
        default=AUTO,
        help="auto (default): strict when a build runs so, else minor-version compatibility "
        "with compiled kernels for every GPU; strict; minor",
    )
    plan.add_argument("--conda-channel", choices=CONDA_CHANNELS, default=AUTO)
    plan.add_argument("--toolkit", action="store_true", help="also a CUDA toolkit with nvcc")
    plan.add_argument("--mirror", default="tuna", help="mirror for conda and PyPI (default tuna)")
    plan.add_argument(
        "--wheel-mirror", default="aliyun", help="mirror of the PyTorch wheel indexes"
    )
    plan.add_argument("--env-name", default="torch", help="conda env name in the command")
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.set_defaults(handler=plan_command)
    return plan
