"""`labtorch plan`: text and JSON output, exit status, and errors that name what was wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labtorch.cli.main import main

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def plan_json(capsys, *argv: str) -> tuple[int, dict]:
    status, out, _ = run(capsys, "plan", "--json", *argv)
    return status, json.loads(out)


def test_article_scenario_text(capsys):
    status, out, _ = run(
        capsys,
        "plan",
        "--torch",
        "2.3.1",
        "--platform",
        "linux-64",
        "--python",
        "3.12",
        "--nvidia-smi",
        str(FIXTURES / "table_a100-sxm4-40gb_550.144.03.txt"),
    )
    assert status == 0
    assert out.startswith("torch 2.3.1 for linux-64 with conda: cu121 (CUDA 12.1), Python 3.12")
    assert "newer driver runs older CUDA builds" in out
    command = out.split("Install:\n", 1)[1].strip()
    assert command.startswith("conda create -n torch --override-channels")
    assert "-c https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/pytorch" in command
    assert "pytorch=2.3.1=py3.12_cuda12.1_cudnn8.9.2_0" in command
    assert "pytorch-cuda=12.1" in command
    assert "does not mirror" in out


def test_json_has_the_documented_keys(capsys):
    status, data = plan_json(
        capsys,
        "--torch",
        "2.9",
        "--installer",
        "pip",
        "--platform",
        "linux-64",
        "--python",
        "3.12",
        "--nvidia-smi",
        str(FIXTURES / "table_gtx1080ti_570.86.15.txt"),
    )
    assert status == 0
    assert data["variant"] == "cu126"
    assert data["torch"] == "torch==2.9.1+cu126"
    assert data["refused"] is False
    assert isinstance(data["reasons"], list) and data["reasons"]
    assert data["command"] == (
        "python3.12 -m pip install --index-url https://pypi.tuna.tsinghua.edu.cn/simple "
        "--find-links https://mirrors.aliyun.com/pytorch-wheels/cu126/ "
        "torch==2.9.1+cu126 torchvision==0.24.1+cu126 torchaudio==2.9.1+cu126"
    )


def test_refusal_exits_3(capsys):
    status, data = plan_json(
        capsys,
        "--torch",
        "2.6",
        "--installer",
        "pip",
        "--platform",
        "win-64",
        "--nvidia-smi",
        str(FIXTURES / "table_rtx5060-win-bom_576.88.txt"),
    )
    assert status == 3
    assert data["refused"] is True
    assert data["variant"] is None
    assert data["command"] == ""
    assert any("2.7" in reason for reason in data["reasons"])


def test_driver_not_loaded_is_refused_with_meaning(capsys):
    status, data = plan_json(
        capsys,
        "--torch",
        "2.9",
        "--platform",
        "linux-64",
        "--nvidia-smi",
        str(FIXTURES / "err_driver-not-loaded.txt"),
    )
    assert status == 3
    assert any("driver-not-loaded" in reason for reason in data["reasons"])


def test_windows_command_quotes_for_cmd(capsys):
    status, data = plan_json(
        capsys,
        "--torch",
        "2.7.1",
        "--platform",
        "win-64",
        "--python",
        "3.12",
        "--nvidia-smi",
        str(FIXTURES / "table_rtx3060-win_560.94.txt"),
    )
    assert status == 0
    assert data["variant"] == "cu126"
    assert '"pytorch=2.7.1=cuda126_*_py312_*"' in data["command"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--torch", "2.16"], "unknown torch release 2.16"),
        (["--torch", "2.3.1", "--variant", "cu999"], "unknown variant 'cu999'"),
        (
            ["--torch", "2.3.1", "--nvidia-smi", "/nonexistent/smi.txt"],
            "cannot read --nvidia-smi file /nonexistent/smi.txt",
        ),
        (
            ["--torch", "2.3.1", "--nvidia-smi", "FIXTURE:dmon_h100-80gb-mig_590.48.01.txt"],
            "is not nvidia-smi output labtorch can read",
        ),
    ],
)
def test_bad_input_exits_2_naming_the_problem(capsys, argv, message):
    argv = [a.replace("FIXTURE:", f"{FIXTURES}/") for a in argv]
    status, out, err = run(capsys, "plan", *argv)
    assert status == 2
    assert out == ""
    assert message in err


def plan_in_subprocess(path: str) -> dict:
    """Run `labtorch plan` as a user would, with PATH deciding which nvidia-smi it finds."""
    argv = ["--torch", "2.9", "--installer", "pip", "--platform", "linux-64", "--python", "3.12"]
    done = subprocess.run(
        [sys.executable, "-m", "labtorch.cli.main", "plan", *argv, "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": path},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_without_nvidia_smi_on_path_plans_cpu(tmp_path):
    data = plan_in_subprocess(str(tmp_path))
    assert data["variant"] == "cpu"
    assert any("no nvidia-smi" in reason for reason in data["reasons"])


def test_local_nvidia_smi_is_run(tmp_path):
    fake = tmp_path / "nvidia-smi"
    xml = FIXTURES / "xml_rtx3090_590.44.01.xml"
    fake.write_text(f"#!/bin/sh\ncat {xml}\n")
    fake.chmod(0o755)
    data = plan_in_subprocess(f"{tmp_path}:{os.environ['PATH']}")
    assert data["variant"] == "cu130"


@pytest.mark.parametrize(
    ("wheel_mirror", "flag"),
    [
        ("aliyun", "--find-links https://mirrors.aliyun.com/pytorch-wheels/cu126/"),
        ("nju", "--extra-index-url https://mirrors.nju.edu.cn/pytorch/whl/cu126"),
        ("upstream", "--extra-index-url https://download.pytorch.org/whl/cu126"),
    ],
)
def test_wheel_mirror_layouts(capsys, wheel_mirror, flag):
    _, data = plan_json(
        capsys, "--torch", "2.9", "--installer", "pip", "--platform", "linux-64",
        "--python", "3.12", "--wheel-mirror", wheel_mirror,
        "--nvidia-smi", str(FIXTURES / "table_gtx1080ti_570.86.15.txt"),
    )  # fmt: skip
    assert flag in data["command"]
    assert "torch==2.9.1+cu126" in data["command"]


# ------------------------------------------------------------ issue 12: driver policy auto

V100S_535 = str(FIXTURES / "table_v100s-x8_535.171.04.txt")


def test_v100s_on_535_gets_a_cuda_build_through_minor_compatibility(capsys):
    status, out, _ = run(
        capsys, "plan", "--torch", "2.7.1", "--installer", "conda", "--nvidia-smi", V100S_535
    )
    assert status == 0
    assert out.startswith("torch 2.7.1 for linux-64 with conda: cu129 (CUDA 12.9)")
    assert "through CUDA minor-version compatibility" in out
    assert "every GPU has its own compiled kernels in it (sm_70)" in out
    warnings = out.split("Warnings:\n", 1)[1].split("\n\n", 1)[0]
    assert "only through CUDA minor-version compatibility" in warnings
    assert "575.51.03 or newer (CUDA 12.9)" in warnings
    python = f"{sys.version_info.major}{sys.version_info.minor}"  # this machine's Python
    assert f"'pytorch=2.7.1=cuda129_*_py{python}_*'" in out


def test_v100s_on_535_strict_still_gets_the_cpu_build(capsys):
    status, data = plan_json(
        capsys,
        "--torch",
        "2.7.1",
        "--installer",
        "conda",
        "--nvidia-smi",
        V100S_535,
        "--driver-policy",
        "strict",
    )
    assert status == 0
    assert data["variant"] == "cpu"
    assert any("too old for every CUDA build" in r for r in data["reasons"])
    assert any("560.28.03" in w for w in data["warnings"])
