"""Options of the CLI that had no test: ``labtorch plan --toolkit/--driver-policy/--conda-channel/
--env-name`` and a local nvidia-smi that fails; ``labtorch report``'s bad input (exit 2) and
paths it cannot write; ``labtorch mirrors --variant``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labtorch.cli import mirrors as mirrors_cli
from labtorch.cli.main import main
from labtorch.cli.report import add_report_parser
from labtorch.report.reachability import Answer

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"
H100_570 = str(FIXTURES / "table_h100-x2_570.133.20.txt")
V100S_535 = str(FIXTURES / "table_v100s-x8_535.171.04.txt")
TUNA = "https://mirrors.tuna.tsinghua.edu.cn/anaconda"
HERE = ("--platform", "linux-64", "--python", "3.11")


def plan(capsys, *argv: str) -> tuple[int, dict]:
    status = main(["plan", "--json", *HERE, *argv])
    out, _ = capsys.readouterr()
    return status, json.loads(out)


# ---------------------------------------------------------------- labtorch plan


def test_toolkit_adds_nvcc_of_the_builds_cuda_conda(capsys):
    _, without = plan(capsys, "--torch", "2.7.1", "--nvidia-smi", H100_570)
    status, data = plan(capsys, "--torch", "2.7.1", "--nvidia-smi", H100_570, "--toolkit")
    assert status == 0 and data["variant"] == without["variant"] == "cu126"
    assert "cuda-nvcc" not in without["command"]
    assert data["command"] == without["command"] + " 'cuda-nvcc=12.6.*'"
    assert [pin["name"] for pin in data["toolkit"]] == ["cuda-nvcc"]
    assert data["packages"] == without["packages"]


def test_toolkit_adds_nvcc_of_the_builds_cuda_pip(capsys):
    argv = ("--torch", "2.9.1", "--installer", "pip", "--nvidia-smi", H100_570)
    _, without = plan(capsys, *argv)
    status, data = plan(capsys, *argv, "--toolkit")
    assert status == 0 and data["variant"] == "cu128"
    assert data["command"] == without["command"] + " 'nvidia-cuda-nvcc-cu12==12.8.*'"


def test_toolkit_on_a_cpu_plan_adds_nothing(capsys):
    _, without = plan(capsys, "--torch", "2.7.1", "--variant", "cpu")
    status, data = plan(capsys, "--torch", "2.7.1", "--variant", "cpu", "--toolkit")
    assert status == 0 and data["variant"] == "cpu"
    assert data["command"] == without["command"] and data["toolkit"] == []


@pytest.mark.parametrize(
    ("policy", "variant", "reason", "warned"),
    [
        # 12.2 < 12.6: no CUDA build runs strictly; the CPU build, with the driver needed.
        ("strict", "cpu", "too old for every CUDA build", False),
        # Asked for: any 12.x build on a 525.60.13+ driver, said in the reasons.
        (
            "minor",
            "cu129",
            "runs CUDA 12.9 under minor-version compatibility (needs >= 525.60.13",
            False,
        ),
        # auto falls back to it because sm_70 is compiled in, and warns.
        ("auto", "cu129", "through CUDA minor-version compatibility", True),
    ],
)
def test_driver_policy(capsys, policy, variant, reason, warned):
    argv = ("--torch", "2.7.1", "--nvidia-smi", V100S_535, "--driver-policy", policy)
    status, data = plan(capsys, *argv)
    assert status == 0 and data["variant"] == variant
    assert any(reason in line for line in data["reasons"]), data["reasons"]
    warnings = [w for w in data["warnings"] if "minor-version compatibility" in w]
    assert bool(warnings) is warned, data["warnings"]


def test_driver_policy_rejects_other_words(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["plan", "--torch", "2.7.1", "--driver-policy", "loose"])
    assert caught.value.code == 2
    assert "invalid choice: 'loose'" in capsys.readouterr().err


def test_conda_channel_auto_takes_conda_forge_where_it_has_the_release(capsys):
    _, auto = plan(capsys, "--torch", "2.5.1", "--nvidia-smi", H100_570)
    assert auto["channels"] == ["conda-forge"]
    status, old = plan(capsys, "--torch", "2.5.1", "--nvidia-smi", H100_570,
                       "--conda-channel", "pytorch")  # fmt: skip
    assert status == 0
    assert old["channels"] == ["pytorch", "nvidia", "defaults"]
    assert old["torch"] == "pytorch=2.5.1=py3.11_cuda12.4_cudnn9.1.0_0"
    assert f"-c {TUNA}/cloud/pytorch" in old["command"]
    assert "-c https://mirrors.sustech.edu.cn/anaconda-extra/cloud/nvidia" in old["command"]
    assert "pytorch-cuda=12.4" in old["command"]


@pytest.mark.parametrize(
    ("release", "channel", "reason"),
    [
        ("2.3.1", "conda-forge", "conda-forge has no pytorch 2.3.1 for linux-64"),
        ("2.7.1", "pytorch", "the pytorch conda channel stops at 2.5.1"),
    ],
)
def test_conda_channel_without_the_release_is_a_refusal(capsys, release, channel, reason):
    status, data = plan(capsys, "--torch", release, "--nvidia-smi", H100_570,
                        "--conda-channel", channel)  # fmt: skip
    assert status == 3 and data["refused"] and data["torch"] is None
    assert reason in data["reasons"][-1]


@pytest.mark.parametrize(
    ("name", "in_command"), [("ml-2024", "-n ml-2024 "), ("my env", "-n 'my env' ")]
)
def test_env_name_is_the_env_the_command_creates(capsys, name, in_command):
    _, default = plan(capsys, "--torch", "2.7.1", "--nvidia-smi", H100_570)
    status, data = plan(capsys, "--torch", "2.7.1", "--nvidia-smi", H100_570, "--env-name", name)
    assert status == 0
    assert default["command"].startswith("conda create -n torch ")
    assert data["command"].startswith("conda create " + in_command)
    assert data["command"].split(in_command, 1)[1] == default["command"].split("-n torch ", 1)[1]


def _plan_with_path(path: str) -> subprocess.CompletedProcess[str]:
    """``labtorch plan`` here, with this PATH: it runs whatever nvidia-smi it finds."""
    return subprocess.run(
        [sys.executable, "-m", "labtorch.cli.main", "plan", "--torch", "2.9", "--installer",
         "pip", "--json"],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip


def test_a_local_nvidia_smi_that_fails_is_a_refusal_with_its_meaning(tmp_path):
    error = (FIXTURES / "err_driver-not-loaded.txt").read_text()
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\ncat >&2 <<'EOF'\n{error}EOF\nexit 9\n")
    fake.chmod(0o755)
    done = _plan_with_path(f"{tmp_path}:{os.environ['PATH']}")
    assert done.returncode == 3, done.stderr
    data = json.loads(done.stdout)
    assert data["refused"] and data["variant"] is None
    assert data["reasons"][-1].startswith("nvidia-smi failed (driver-not-loaded):")
    assert "modprobe nvidia" in data["reasons"][-1]


def test_a_local_nvidia_smi_that_cannot_run_is_bad_input(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_bytes(b"\x7fELF not really")
    fake.chmod(0o755)
    done = _plan_with_path(f"{tmp_path}:{os.environ['PATH']}")
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"running {fake} failed: [Errno 8] Exec format error" in done.stderr


# ---------------------------------------------------------------- labtorch report


def report(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="labtorch")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    return args.handler(args)


def test_report_without_the_inventory_file_exits_2(tmp_path, capsys):
    missing = tmp_path / "lab.py"
    assert report(str(missing)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"labtorch report: error: no inventory file {missing}\n"


def test_report_on_an_inventory_pyinfra_cannot_load_exits_2(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("hosts = [\n")
    assert report(str(broken)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"labtorch report: error: pyinfra could not load {broken}: ")
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--json", "--html"])
@pytest.mark.parametrize("where", ["missing-dir/report.out", "."])
def test_report_to_a_path_it_cannot_write_exits_2(tmp_path, capsys, option, where):
    """An inventory without hosts audits nothing (0 of 0 ok); the file it cannot write is the
    error, named with the reason."""
    inventory = tmp_path / "empty.py"
    inventory.write_text("hosts = []\n")
    target = tmp_path / where
    assert report(str(inventory), option, str(target)) == 2
    out, err = capsys.readouterr()
    assert "0 of 0 hosts ok" in out
    reason = "Is a directory" if where == "." else "No such file or directory"
    assert err == f"labtorch report: error: cannot write {target}: {reason}\n"


def test_report_of_an_empty_inventory_passes_and_writes_both_files(tmp_path, capsys):
    inventory = tmp_path / "empty.py"
    inventory.write_text("hosts = []\n")
    json_file, html_file = tmp_path / "r.json", tmp_path / "r.html"
    assert report(str(inventory), "--json", str(json_file), "--html", str(html_file)) == 0
    assert json.loads(json_file.read_text())["hosts"] == []
    assert "0 of 0 hosts ok" in html_file.read_text()


# ---------------------------------------------------------------- labtorch mirrors --variant


@pytest.fixture
def fetched(monkeypatch) -> list[str]:
    """Every URL `labtorch mirrors` fetches, each answered 200 with an empty page."""
    urls: list[str] = []

    def fetch(url: str, timeout: float) -> Answer:
        urls.append(url)
        return Answer(200, url, b"<html></html>", 0.01)

    monkeypatch.setattr(mirrors_cli, "fetch", fetch)
    return urls


@pytest.mark.parametrize(
    ("mirror", "argv", "page"),
    [
        ("nju", (), "https://mirrors.nju.edu.cn/pytorch/whl/cpu"),
        ("nju", ("--variant", "cu126"), "https://mirrors.nju.edu.cn/pytorch/whl/cu126"),
        ("aliyun", ("--variant", "cu128"), "https://mirrors.aliyun.com/pytorch-wheels/cu128/"),
        ("upstream", ("--variant", "cu130"), "https://download.pytorch.org/whl/cu130"),
    ],
)
def test_mirrors_variant_picks_the_wheel_page(capsys, fetched, mirror, argv, page):
    assert main(["mirrors", "--json", mirror, *argv]) == 0
    outcomes = json.loads(capsys.readouterr().out)["outcomes"]
    wheels = [o["endpoint"] for o in outcomes if o["endpoint"]["what"].startswith("PyTorch")]
    variant = argv[1] if argv else "cpu"
    assert wheels == [{"mirror": mirror, "what": f"PyTorch wheels ({variant})", "url": page}]
    assert page in fetched
    assert not [url for url in fetched if "/whl/" in url or "wheels/" in url if url != page]
