"""The article's route end to end: PyTorch 2.3.1 from the ``pytorch`` conda channel with
``pytorch-cuda`` from the ``nvidia`` channel, through the lab's mirror (issue 10, item 3).

A lab of its own with one host per case: Volta on driver 535 (runs CUDA 12.1: cu121), an RTX
3090 on driver 525 (CUDA 12.0: cu118, not cu121), and a host without a GPU but with conda (the
CPU build with ``cpuonly``). ``inventories/sim.py`` puts these profiles on the pytorch-channel
route without setting ``torch_release``, so they get labtorch's default release. The tests run in
order: first converge, every download from the mirror, a no-op rerun, and the repair of torch
replaced by its CPU build with ``cpuonly`` (which is removed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from labhelpers import deploy as run_deploy
from labhelpers import must, not_from_the_mirror, running_lab, ssh

from labtorch_sim import lab
from labtorch_sim.mirror import read_log

PROFILES = "lab: [volta, ampere-525, cpu-conda]\n"
HOSTS = ["lab01", "lab02", "lab03"]
PYTHON = "/opt/conda/envs/torch/bin/python"
CONDA = "/opt/conda/bin/conda"
PROBE = "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"
EXPECTED = {
    # host: pytorch build, pytorch-cuda, cuda-cudart, what the stand-in torch says
    "lab01": ("py3.11_cuda12.1_cudnn8.9.2_0", "12.1", "12.1.105", "2.3.1 12.1 True"),
    "lab02": ("py3.11_cuda11.8_cudnn8.7.0_0", "11.8", "11.8.89", "2.3.1 11.8 True"),
    "lab03": ("py3.11_cpu_0", None, None, "2.3.1 None False"),
}


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Iterator[Path]:
    with running_lab(tmp_path_factory, "article-lab", PROFILES) as state_dir:
        yield state_dir


def deploy(lab_dir: Path) -> tuple[int, dict | None, str]:
    return run_deploy(lab_dir, lab_dir)


def changed_hosts(results: dict) -> set[str]:
    return {name for op in results["operations"] for name in op["success"]}


def listing(lab_dir: Path, host: str) -> dict[str, dict]:
    entries = json.loads(must(ssh(lab_dir, host, f"{CONDA} list -n torch --json")))
    return {entry["name"]: entry for entry in entries}


def test_first_run_converges_each_case(lab_dir):
    status, results, stderr = deploy(lab_dir)
    assert status == 0, stderr
    assert results["failed_hosts"] == []
    assert sorted(changed_hosts(results)) == HOSTS
    assert "labtorch plan: cu121" in stderr and "labtorch plan: cu118" in stderr
    for host, (build, cuda, cudart, probe) in EXPECTED.items():
        packages = listing(lab_dir, host)
        assert (packages["pytorch"]["build_string"], packages["pytorch"]["channel"]) == (
            build,
            "pytorch",
        ), host
        if cuda is None:
            assert "cpuonly" in packages and "pytorch-cuda" not in packages, host
            assert not [name for name in packages if name.startswith(("cuda-", "libcu"))], host
        else:
            assert packages["pytorch-cuda"]["version"] == cuda, host
            assert packages["pytorch-cuda"]["channel"] == "pytorch", host
            assert (packages["cuda-cudart"]["version"], packages["cuda-cudart"]["channel"]) == (
                cudart,
                "nvidia",
            ), host
            assert packages["cuda-runtime"]["channel"] == "nvidia", host
        code = (
            "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"
        )
        assert must(ssh(lab_dir, host, f"{PYTHON} -c '{code}'")).strip() == probe, host


def test_every_download_came_from_the_mirror(lab_dir):
    url = lab.status(lab_dir).mirror.url
    served = {e["path"] for e in read_log(lab.mirror_state_dir(lab_dir)) if e["status"] == 200}
    assert "/anaconda/cloud/nvidia/linux-64/cuda-cudart-12.1.105-0.tar.bz2" in served
    assert "/anaconda/cloud/nvidia/linux-64/cuda-cudart-11.8.89-0.tar.bz2" in served
    for host in HOSTS:
        packages = listing(lab_dir, host)
        assert all(entry["base_url"].startswith(url) for entry in packages.values()), host
        nvidia = [entry for entry in packages.values() if entry["channel"] == "nvidia"]
        assert all(e["base_url"] == f"{url}/anaconda/cloud/nvidia" for e in nvidia), host
    assert not_from_the_mirror(lab_dir, HOSTS) == {}


def test_second_run_changes_nothing(lab_dir):
    status, results, _ = deploy(lab_dir)
    assert status == 0
    assert changed_hosts(results) == set()


def test_torch_replaced_by_its_cpu_build_and_cpuonly_is_repaired(lab_dir):
    must(
        ssh(
            lab_dir,
            "lab01",
            f"CONDA_OVERRIDE_CUDA= {CONDA} install -n torch -y -q --override-channels "
            "-c pytorch 'pytorch=2.3.1=py3.11_cpu_0' cpuonly",
        )
    )
    assert listing(lab_dir, "lab01")["pytorch-mutex"]["build_string"] == "cpu"
    status, results, _ = deploy(lab_dir)
    assert status == 0
    assert changed_hosts(results) == {"lab01"}
    packages = listing(lab_dir, "lab01")
    assert packages["pytorch"]["build_string"] == EXPECTED["lab01"][0]
    assert "cpuonly" not in packages and packages["pytorch-mutex"]["build_string"] == "cuda"
    # The repair's commands, after the drift's own: cpuonly is removed (it would hold the CPU
    # variant through pytorch-mutex), and the CUDA build installed.
    history = must(ssh(lab_dir, "lab01", "cat /opt/conda/envs/torch/conda-meta/history"))
    commands = [line for line in history.splitlines() if line.startswith("# cmd:")]
    drift = max(i for i, line in enumerate(commands) if "py3.11_cpu_0" in line)
    repair = commands[drift + 1 :]
    assert any(" remove " in line and line.endswith(" cpuonly") for line in repair), repair
    assert any(" install " in line for line in repair), repair
    _, again, _ = deploy(lab_dir)
    assert changed_hosts(again) == set()
