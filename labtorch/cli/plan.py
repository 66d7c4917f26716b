"""``labtorch plan``: the answer for one machine without a fleet, and the command to run."""

from __future__ import annotations

import argparse
import json
import ntpath
import os
import platform as host_platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path

from labtorch.data.compat import load_compat
from labtorch.data.mirrors import load_catalog
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport, parse_nvidia_smi
from labtorch.facts.platform import conda_platform
from labtorch.rules.commands import CMD, POSIX, POWERSHELL, SHELLS, default_shell, install_command
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


def this_python() -> str:
    """The Python running labtorch: the one the reader has at hand."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _env(environ: Mapping[str, str], name: str) -> str:
    """An environment variable by name, ignoring case as Windows does."""
    wanted = name.lower()
    return next((value for key, value in environ.items() if key.lower() == wanted), "")


def nvidia_smi_candidates(platform: str, environ: Mapping[str, str]) -> list[str]:
    """Where the NVIDIA driver installer puts nvidia-smi when it is not on PATH: on Windows,
    System32 (DCH drivers) and ``NVIDIA Corporation\\NVSMI`` under Program Files (older ones)."""
    if platform != "win-64":
        return []
    system_root = _env(environ, "SystemRoot") or r"C:\Windows"
    program_files = _env(environ, "ProgramFiles") or r"C:\Program Files"
    return [
        ntpath.join(system_root, "System32", "nvidia-smi.exe"),
        ntpath.join(program_files, "NVIDIA Corporation", "NVSMI", "nvidia-smi.exe"),
    ]


def find_nvidia_smi(
    platform: str,
    environ: Mapping[str, str] | None = None,
    which: Callable[[str], str | None] | None = None,
    is_file: Callable[[str], bool] | None = None,
) -> str | None:
    """nvidia-smi on PATH, else where the driver installer puts it; None: not installed."""
    found = (which or shutil.which)("nvidia-smi")
    if found:
        return found
    candidates = nvidia_smi_candidates(platform, os.environ if environ is None else environ)
    return next((path for path in candidates if (is_file or os.path.isfile)(path)), None)


def detect_shell(platform: str, environ: Mapping[str, str] | None = None) -> str:
    """The shell ``labtorch plan`` runs in, for quoting its command: POSIX off Windows; on
    Windows PowerShell when PSModulePath names a module folder in the user's profile (PowerShell
    prepends ``Documents\\[Windows]PowerShell\\Modules``; cmd.exe inherits only the system's
    ones), POSIX under MSYS/Git Bash, else cmd.exe. ``--shell`` overrides it."""
    if platform != "win-64":
        return POSIX
    environ = os.environ if environ is None else environ
    if _env(environ, "MSYSTEM"):
        return POSIX
    profile = _env(environ, "USERPROFILE").rstrip("\\").lower()
    for entry in _env(environ, "PSModulePath").split(";"):
        folder = entry.strip().rstrip("\\").lower()
        if folder.endswith("powershell\\modules") and profile and folder.startswith(profile):
            return POWERSHELL
    return CMD


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


def run_local_nvidia_smi(platform: str | None = None) -> SmiReport | SmiFailure | None:
    """Ask this machine's nvidia-smi; None when it is not installed."""
    executable = find_nvidia_smi(platform or this_platform())
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
    here = this_platform()
    platform = args.platform or here
    local = platform == here
    smi = (
        read_nvidia_smi_file(args.nvidia_smi)
        if args.nvidia_smi
        else run_local_nvidia_smi(platform if local else here)
    )
    return HostFacts(
        platform=platform,
        glibc=_this_glibc() if local else None,
        macos=_this_macos() if local else None,
        python=this_python() if local else None,
        nvidia_smi=smi,
    )


def _shell(args: argparse.Namespace, plan: Plan) -> str:
    if args.shell:
        return args.shell
    if plan.platform == this_platform():
        return detect_shell(plan.platform)
    return default_shell(plan.platform)


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
    shell = _shell(args, plan)
    command = install_command(plan, args.env_name, shell)
    if args.json:
        print(
            json.dumps(
                {
                    **plan.to_dict(),
                    "torch": plan.torch.spec if plan.torch else None,
                    "command": command,
                    "shell": shell,
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
    plan.add_argument("--platform", choices=PLATFORMS, default=None, help="default: this machine's")
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
    plan.add_argument(
        "--shell",
        choices=SHELLS,
        default=None,
        help="quote the command for this shell (default: the one labtorch runs in on Windows, "
        "detected from PSModulePath; cmd for win-64 plans made elsewhere; posix otherwise)",
    )
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.set_defaults(handler=plan_command)
    return plan
