"""The probe's verdict, and the fact that sends the probe."""

from __future__ import annotations

import pytest

from labtorch.facts import probe_script
from labtorch.facts.pyinfra_facts import TorchProbe
from labtorch.rules.verdict import Expectation, judge

MIRROR = "http://m.example/anaconda/cloud/conda-forge"


UPSTREAM = "https://conda.anaconda.org/conda-forge/x.tar.bz2"


def probe(torch="2.7.1", cuda="12.6", available=True, devices=(("6.1", "ok"),),
          arch=("sm_60", "sm_86"), url=f"{MIRROR}/p.tar.bz2", cpu_matmul="ok"):  # fmt: skip
    return {
        "packages": {"torch": {"version": torch, "error": None}},
        "origins": {"torch": {"installer": "conda", "channel": None, "url": url}},
        "gpu": {
            "cuda": cuda,
            "available": available,
            "arch_list": list(arch),
            "warnings": [] if available else ["Found no NVIDIA driver on your system."],
            "devices": [
                {"index": i, "name": "GPU", "capability": cap, "matmul": matmul}
                for i, (cap, matmul) in enumerate(devices)
            ],
        },
        "cpu_matmul": cpu_matmul,
    }


GPU_PLAN = Expectation("2.7.1", "cu126", "12.6", 1, [MIRROR])
CPU_PLAN = Expectation("2.9.1+cpu", "cpu", None, 0, ["http://m.example/pytorch-wheels/cpu/"])


@pytest.mark.parametrize(
    ("found", "expected", "failure"),
    [
        (probe(), GPU_PLAN, None),
        (probe(devices=(("8.9", "ok"),)), GPU_PLAN, None),  # Ada runs on sm_86 SASS
        (probe(arch=("sm_70", "compute_70"), devices=(("9.0", "ok"),)), GPU_PLAN, None),  # PTX JIT
        (probe(cuda=None, available=False, devices=()), GPU_PLAN, "torch is a CPU build"),
        (probe(cuda="12.8"), GPU_PLAN, "built for CUDA 12.8, the plan says 12.6"),
        (probe(available=False, devices=()), GPU_PLAN, "is_available() is False: Found no NVIDIA"),
        (probe(devices=(("12.0", "RuntimeError: no kernel image"),)), GPU_PLAN, "do not cover it"),
        (probe(devices=(("8.6", "wrong result 7.0"),)), GPU_PLAN, "matmul failed: wrong result"),
        (probe(torch="2.7.0"), GPU_PLAN, "torch 2.7.0 is installed, the plan says 2.7.1"),
        (probe(url=UPSTREAM), GPU_PLAN, "not from the mirror"),
        (probe(devices=()), GPU_PLAN, "torch sees no GPU"),
        (probe(cpu_matmul="RuntimeError: x"), GPU_PLAN, "a matmul on the CPU failed"),
        (probe(torch="2.9.1+cpu", cuda=None, available=False, devices=(),
               url="http://m.example/pytorch-wheels/cpu/torch.whl"), CPU_PLAN, None),
        (probe(torch="2.9.1+cpu", cuda=None, available=False, devices=()),
         Expectation("2.9.1+cpu", "cpu", None, 8, [MIRROR], "driver too old"),
         "a CPU build on a host with 8 GPU(s): driver too old"),
        (None, GPU_PLAN, "the env has no python to probe"),
    ],
)  # fmt: skip
def test_judge(found, expected, failure):
    verdict = judge(found, expected)
    assert verdict.passed == (failure is None)
    if failure:
        assert any(failure in text for text in verdict.failures), verdict.failures


def test_unknown_pip_origin_is_a_note_not_a_failure():
    found = probe(url=None)
    verdict = judge(found, GPU_PLAN)
    assert verdict.passed
    assert verdict.notes == ["torch: where pip downloaded it from was not recorded"]


def test_probe_fact_sends_the_script_and_reads_its_line():
    fact = TorchProbe()
    command = fact.command(
        python="/opt/conda/envs/torch/bin/python", kernel_driver="590.48.01"
    ).get_raw_value()
    assert command.startswith(
        "if [ -x /opt/conda/envs/torch/bin/python ]; then /opt/conda/envs/torch/bin/python - "
        "--keep 590.48.01 <<'LABTORCH_PROBE_END'\n"
    )
    assert "def gpu_facts(torch):" in command
    assert command.endswith("\nLABTORCH_PROBE_END\nfi")
    output = ["some warning", probe_script.MARK + '{"packages": {}}']
    assert fact.process(output) == {"packages": {}}
    assert fact.process(["no marker"]) is None
