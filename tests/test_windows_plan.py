"""Issue 16: the article's reader, a Windows PC, gets exactly the article's command.

Windows is simulated on Linux: the platform, the Python at hand, the places the NVIDIA installer
puts nvidia-smi, the shell's environment, and nvidia-smi's own output (the UTF-16/CRLF and
plain Windows captures of tests/fixtures/nvidia-smi) are monkeypatched in.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from labtorch.cli import plan as plan_cli
from labtorch.cli.main import main
from labtorch.data.compat import CPU, cuda_of_variant, load_compat
from labtorch.data.gpus import ComputeCapability, Gpu
from labtorch.data.mirrors import load_catalog
from labtorch.facts.nvidia_smi import SmiReport
from labtorch.rules.commands import CMD, POSIX, POWERSHELL, install_command
from labtorch.rules.model import HostFacts, Request
from labtorch.rules.plan import plan_for_host

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"
RTX3060_126 = FIXTURES / "table_rtx3060-win_560.94.txt"  # CUDA 12.6
RTX2080_117 = FIXTURES / "xml_rtx2080-win_516.59.xml"  # CUDA 11.7
GTX1650_UTF16 = FIXTURES / "table_gtx1650-win-utf16_581.08.txt"  # UTF-16 LE, CRLF, CUDA 13.0

ARTICLE_CU121 = (
    "pytorch=2.3.1=py3.12_cuda12.1_cudnn8_0 torchvision=0.18.1=py312_cu121 "
    "torchaudio=2.3.1=py312_cu121 pytorch-cuda=12.1"
)
ARTICLE_CU118 = (
    "pytorch=2.3.1=py3.12_cuda11.8_cudnn8_0 torchvision=0.18.1=py312_cu118 "
    "torchaudio=2.3.1=py312_cu118 pytorch-cuda=11.8"
)
ARTICLE_CPU = (
    "pytorch=2.3.1=py3.12_cpu_0 torchvision=0.18.1=py312_cpu torchaudio=2.3.1=py312_cpu cpuonly=2.0"
)
TUNA_PYTORCH = "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/pytorch"
SUSTECH_NVIDIA = "https://mirrors.sustech.edu.cn/anaconda-extra/cloud/nvidia"

# What PowerShell and cmd.exe put in PSModulePath for one user (PowerShell prepends the
# user's module folder; cmd.exe inherits the system's only).
SYSTEM_MODULES = (
    r"C:\Program Files\WindowsPowerShell\Modules;"
    r"C:\WINDOWS\system32\WindowsPowerShell\v1.0\Modules"
)
POWERSHELL_ENV = {
    "USERPROFILE": r"C:\Users\reader",
    "PSModulePath": r"C:\Users\reader\Documents\WindowsPowerShell\Modules;" + SYSTEM_MODULES,
    "SystemRoot": r"C:\WINDOWS",
    "ProgramFiles": r"C:\Program Files",
}
CMD_ENV = {**POWERSHELL_ENV, "PSModulePath": SYSTEM_MODULES}


def run(capsys, *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    out, _ = capsys.readouterr()
    return status, out


def command_of(out: str) -> str:
    return out.split("Install:\n", 1)[1].strip()


# ------------------------------------------------------------ the article's three cases


def test_article_rtx_on_cuda_12(capsys):
    status, out = run(
        capsys,
        "plan",
        "--torch",
        "2.3.1",
        "--platform",
        "win-64",
        "--python",
        "3.12",
        "--installer",
        "conda",
        "--nvidia-smi",
        str(RTX3060_126),
    )
    assert status == 0
    command = command_of(out)
    assert ARTICLE_CU121 in command
    assert f"-c {TUNA_PYTORCH} -c {SUSTECH_NVIDIA}" in command
    assert command.startswith("conda create -n torch --override-channels")
    # the reader's two pitfalls, named in the reasons
    why = out.split("Why:\n", 1)[1].split("\n\n", 1)[0]
    assert "nothing provides cuda-cudart >=12.1,<12.2 needed by pytorch-cuda-12.1" in why
    assert "from the nvidia channel (here sustech's mirror" in why
    assert "a driver that shows CUDA 12.6 runs every build up to CUDA 12.6" in why
    assert "not a driver version they need" in why
    assert "conda-forge has no pytorch 2.3.1 for win-64" in why


def test_article_driver_showing_cuda_11_8_gets_the_cu118_twin():
    report = SmiReport(
        driver_version="522.06",
        cuda_version="11.8",
        gpus=(Gpu(0, "NVIDIA GeForce RTX 3060", capability=ComputeCapability(8, 6)),),
        output_format="table",
    )
    facts = HostFacts(platform="win-64", nvidia_smi=report)
    p = plan_for_host(facts, Request(torch="2.3.1", python="3.12"), load_compat(), load_catalog())
    assert p.variant == "cu118"
    assert " ".join(pin.spec for pin in p.packages) == ARTICLE_CU118
    assert not any("minor-version" in w for w in p.warnings)
    assert "nothing provides cuda-cudart >=11.8,<11.9 needed by pytorch-cuda-11.8" in "\n".join(
        p.reasons
    )


def test_article_driver_showing_cuda_11_7_runs_cu118_by_minor_compatibility(capsys):
    status, out = run(
        capsys,
        "plan",
        "--torch",
        "2.3.1",
        "--platform",
        "win-64",
        "--python",
        "3.12",
        "--nvidia-smi",
        str(RTX2080_117),
    )
    assert status == 0
    assert ARTICLE_CU118 in command_of(out)
    assert "only through CUDA minor-version compatibility" in out
    assert "520.06 or newer (CUDA 11.8)" in out  # Windows' full-support floor of 11.8


def test_article_without_an_nvidia_gpu_gets_the_cpu_build(capsys, monkeypatch):
    monkeypatch.setattr(plan_cli, "run_local_nvidia_smi", lambda platform=None: None)
    status, out = run(
        capsys, "plan", "--torch", "2.3.1", "--platform", "win-64", "--python", "3.12"
    )
    assert status == 0
    assert out.startswith("torch 2.3.1 for win-64 with conda: cpu (no CUDA), Python 3.12")
    command = command_of(out)
    assert ARTICLE_CPU in command
    assert SUSTECH_NVIDIA not in command  # no pytorch-cuda, no nvidia channel


@pytest.mark.parametrize(
    ("driver", "cuda", "variant", "cudnn"),
    [("531.14", "12.1", "cu121", "8"), ("522.06", "11.8", "cu118", "8")],
)
@pytest.mark.parametrize(
    ("release", "expected_cudnn"), [("2.3.1", None), ("2.4.1", "9"), ("2.5.1", "9")]
)
def test_win_64_names_the_cudnn_major_only(driver, cuda, variant, cudnn, release, expected_cudnn):
    report = SmiReport(
        driver_version=driver,
        cuda_version=cuda,
        gpus=(Gpu(0, "NVIDIA GeForce RTX 3080", capability=ComputeCapability(8, 6)),),
        output_format="table",
    )
    request = Request(torch=release, python="3.11", conda_channel="pytorch")
    win = plan_for_host(
        HostFacts("win-64", nvidia_smi=report), request, load_compat(), load_catalog()
    )
    linux = plan_for_host(
        HostFacts("linux-64", nvidia_smi=report), request, load_compat(), load_catalog()
    )
    major = expected_cudnn or cudnn
    assert win.torch.build == f"py3.11_cuda{cuda}_cudnn{major}_0"
    assert linux.torch.build.startswith(f"py3.11_cuda{cuda}_cudnn{major}.")  # Linux: a.b.c
    # companions: exact builds on every platform
    for p in (win, linux):
        assert [(pin.name, pin.build) for pin in p.packages[1:3]] == [
            ("torchvision", f"py311_{variant}"),
            ("torchaudio", f"py311_{variant}"),
        ]


def test_linux_companions_are_pinned_exactly_too():
    report = SmiReport(
        driver_version="550.144.03",
        cuda_version="12.4",
        gpus=(Gpu(0, "NVIDIA A100", capability=ComputeCapability(8, 0)),),
        output_format="table",
    )
    p = plan_for_host(
        HostFacts("linux-64", nvidia_smi=report),
        Request(torch="2.3.1", python="3.11"),
        load_compat(),
        load_catalog(),
    )
    assert [pin.spec for pin in p.packages] == [
        "pytorch=2.3.1=py3.11_cuda12.1_cudnn8.9.2_0",
        "torchvision=0.18.1=py311_cu121",
        "torchaudio=2.3.1=py311_cu121",
        "pytorch-cuda=12.1",
    ]
    cpu = plan_for_host(
        HostFacts("osx-arm64"), Request(torch="2.3.1", python="3.11"), load_compat(), load_catalog()
    )
    assert [pin.spec for pin in cpu.packages][:3] == [
        "pytorch=2.3.1=py3.11_0",
        "torchvision=0.18.1=py311_cpu",
        "torchaudio=2.3.1=py311_cpu",
    ]


# ------------------------------------------------------------ run natively on Windows


@pytest.fixture
def windows(monkeypatch):
    """This process looks like Python 3.12 on a Windows PC whose nvidia-smi is not on PATH but
    in System32, as the NVIDIA installer puts it; it answers with a UTF-16/CRLF capture."""
    monkeypatch.setattr(plan_cli.host_platform, "system", lambda: "Windows")
    monkeypatch.setattr(plan_cli.host_platform, "machine", lambda: "AMD64")
    monkeypatch.setattr(plan_cli.host_platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(plan_cli, "this_python", lambda: "3.12")
    monkeypatch.setattr(plan_cli.shutil, "which", lambda name: None)
    system32 = r"C:\WINDOWS\System32\nvidia-smi.exe"
    monkeypatch.setattr(plan_cli.os.path, "isfile", lambda path: path == system32)
    for key in list(plan_cli.os.environ):
        monkeypatch.delenv(key)
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, GTX1650_UTF16.read_bytes(), b"")

    monkeypatch.setattr(plan_cli.subprocess, "run", fake_run)
    return calls


@pytest.mark.parametrize(("env", "shell"), [(POWERSHELL_ENV, POWERSHELL), (CMD_ENV, CMD)])
def test_native_windows_finds_platform_python_and_nvidia_smi(
    capsys, monkeypatch, windows, env, shell
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    status, out = run(capsys, "plan", "--json", "--torch", "2.3.1")
    assert status == 0
    assert windows == [[r"C:\WINDOWS\System32\nvidia-smi.exe", "-q", "-x"]]
    data = json.loads(out)
    assert data["platform"] == "win-64"
    assert data["python"] == "3.12"
    assert data["shell"] == shell
    assert data["variant"] == "cu121"  # GTX 1650 (sm_75) on a CUDA 13.0 driver
    assert ARTICLE_CU121 in data["command"]
    assert "this machine's Python" in "\n".join(data["reasons"])


def test_native_windows_finds_nvidia_smi_under_program_files(monkeypatch):
    env = {"SystemRoot": r"C:\WINDOWS", "ProgramFiles": r"D:\Programs"}
    nvsmi = r"D:\Programs\NVIDIA Corporation\NVSMI\nvidia-smi.exe"
    found = plan_cli.find_nvidia_smi(
        "win-64", environ=env, which=lambda name: None, is_file=lambda path: path == nvsmi
    )
    assert found == nvsmi
    on_path = plan_cli.find_nvidia_smi(
        "win-64", environ=env, which=lambda name: r"C:\bin\nvidia-smi.exe", is_file=lambda p: True
    )
    assert on_path == r"C:\bin\nvidia-smi.exe"
    assert (
        plan_cli.find_nvidia_smi(
            "win-64", environ=env, which=lambda n: None, is_file=lambda p: False
        )
        is None
    )
    # elsewhere only PATH counts
    assert plan_cli.nvidia_smi_candidates("linux-64", env) == []
    # Windows' environment names ignore case
    assert plan_cli.nvidia_smi_candidates("win-64", {"SYSTEMROOT": r"E:\Win"})[0] == (
        r"E:\Win\System32\nvidia-smi.exe"
    )


@pytest.mark.parametrize(
    ("env", "shell"),
    [
        (POWERSHELL_ENV, POWERSHELL),
        (
            {
                "USERPROFILE": r"C:\Users\reader",
                "PSModulePath": r"C:\Users\reader\Documents\PowerShell\Modules;"
                r"C:\Program Files\PowerShell\Modules;c:\program files\powershell\7\Modules",
            },
            POWERSHELL,
        ),
        (CMD_ENV, CMD),
        ({}, CMD),
        ({**POWERSHELL_ENV, "MSYSTEM": "MINGW64"}, POSIX),
        (
            {"userprofile": r"C:\Users\reader", "psmodulepath": POWERSHELL_ENV["PSModulePath"]},
            POWERSHELL,
        ),
    ],
)
def test_detect_shell(env, shell):
    assert plan_cli.detect_shell("win-64", env) == shell
    assert plan_cli.detect_shell("linux-64", env) == POSIX


def test_shell_option_overrides_and_plans_for_windows_elsewhere_default_to_cmd(capsys):
    argv = ["plan", "--torch", "2.7.1", "--platform", "win-64", "--python", "3.12"]
    argv += ["--nvidia-smi", str(RTX3060_126), "--json"]
    status, out = run(capsys, *argv)
    assert status == 0
    data = json.loads(out)
    assert data["shell"] == CMD
    assert '"pytorch=2.7.1=cuda126_*_py312_*"' in data["command"]
    _, out = run(capsys, *argv, "--shell", "powershell")
    data = json.loads(out)
    assert data["shell"] == POWERSHELL
    assert "'pytorch=2.7.1=cuda126_*_py312_*'" in data["command"]


# ------------------------------------------------------------ one builder, three shells


def _plan(build: str, platform: str = "win-64"):
    report = SmiReport(
        driver_version="560.94",
        cuda_version="12.6",
        gpus=(Gpu(0, "NVIDIA GeForce RTX 3060", capability=ComputeCapability(8, 6)),),
        output_format="table",
    )
    return plan_for_host(
        HostFacts(platform, nvidia_smi=report),
        Request(torch=build, python="3.12"),
        load_compat(),
        load_catalog(),
    )


@pytest.mark.parametrize(
    ("shell", "glob"),
    [
        (CMD, '"pytorch=2.7.1=cuda126_*_py312_*"'),
        (POWERSHELL, "'pytorch=2.7.1=cuda126_*_py312_*'"),
        (POSIX, "'pytorch=2.7.1=cuda126_*_py312_*'"),
    ],
)
def test_install_command_quotes_for_each_shell(shell, glob):
    article = install_command(_plan("2.3.1"), shell=shell)
    assert ARTICLE_CU121 in article  # nothing of the article's pins needs quoting anywhere
    forge = install_command(_plan("2.7.1"), shell=shell)
    assert glob in forge
    assert install_command(_plan("2.7.1"), shell=shell).startswith("conda create -n torch")


def test_powershell_quotes_what_it_would_interpret():
    from labtorch.rules.commands import Arg, render

    words = ["conda", "create", "-n", Arg("my env"), Arg("it's"), Arg("$HOME"), Arg("a;b")]
    assert render(words, shell=POWERSHELL) == "conda create -n 'my env' 'it''s' '$HOME' 'a;b'"
    assert render(words, shell=CMD) == 'conda create -n "my env" it\'s $HOME a;b'


def test_cpu_plan_on_windows_is_cpu():
    facts = HostFacts("win-64")
    p = plan_for_host(facts, Request(torch="2.3.1", python="3.12"), load_compat(), load_catalog())
    assert p.variant == CPU


def _pytorch_channel_cases():
    compat = load_compat()
    for release in compat.releases.values():
        if release.conda_pytorch is None:
            continue
        for variant in release.conda_pytorch.cudnn:
            yield release.newest_patch.version, variant


@pytest.mark.parametrize(("release", "variant"), list(_pytorch_channel_cases()))
def test_every_pytorch_channel_build_per_platform(release, variant):
    """Every release 1.13-2.5 and CUDA variant: win-64 names the cuDNN major, Linux a.b.c, and
    the companions carry py{XY}_{variant} on both."""
    cuda = cuda_of_variant(variant)
    compat = load_compat()
    line, patch = compat.find_release(release)
    python = line.python_min
    report = SmiReport(
        driver_version="595.80",
        cuda_version="13.2",
        gpus=(Gpu(0, "NVIDIA RTX A4000", capability=ComputeCapability(8, 6)),),
        output_format="table",
    )
    request = Request(torch=release, python=python, variant=variant, conda_channel="pytorch")
    for platform, cudnn in (("win-64", r"\d"), ("linux-64", r"\d+\.\d+\.\d+")):
        p = plan_for_host(HostFacts(platform, nvidia_smi=report), request, compat, load_catalog())
        assert re.fullmatch(rf"py{python}_cuda{cuda}_cudnn{cudnn}_0", p.torch.build), p.torch
        tag = python.replace(".", "")
        companions = {pin.name: pin.build for pin in p.packages}
        if patch.torchvision:
            assert companions["torchvision"] == f"py{tag}_{variant}"
        assert companions["pytorch-cuda"] is None
