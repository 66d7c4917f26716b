"""The probe's verdict, and the fact that sends the probe."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from test_rules import CATALOG, host, plan

from labtorch.data.gpus import ComputeCapability, Gpu
from labtorch.deploy.inputs import expectation_for
from labtorch.facts import probe_script
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport, parse_nvidia_smi
from labtorch.facts.pyinfra_facts import TorchProbe
from labtorch.rules.provenance import origins_for
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


# ---------------------------------------------------------------- does torch see every GPU?

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"
EIGHT = Expectation("2.7.1", "cu126", "12.6", 8, [MIRROR], count_devices=True)
EIGHT_MIG = replace(EIGHT, mig_gpus=tuple(range(8)))
H90 = ("9.0", "ok")


def seen(count: int, visible: str | None = None, failing_after_first: bool = False) -> dict:
    bad = ("9.0", "RuntimeError: invalid device ordinal")
    devices = [H90] + [bad if failing_after_first else H90] * (count - 1)
    found = probe(devices=devices, arch=("sm_80", "sm_90"))
    if visible is not None:
        found["gpu"]["visible_devices"] = visible
    return found


MIG_NOTE = "(GPU 0, 1, 2, 3, 4, 5, 6, 7 in MIG mode: CUDA runs only on a MIG compute instance"


@pytest.mark.parametrize(
    ("found", "expected", "failures", "notes"),
    [
        (seen(8), EIGHT, [], []),
        (seen(1), EIGHT, ["torch sees 1 of the 8 GPU(s) nvidia-smi lists: check "
                          "CUDA_VISIBLE_DEVICES in the SSH session's environment"], []),
        (seen(2, visible="0,1"), EIGHT, ["torch sees 2 of the 8 GPU(s) nvidia-smi lists: "
                                         "CUDA_VISIBLE_DEVICES=0,1 in the environment"], []),
        (seen(9), EIGHT, ["torch sees 9 of the 8 GPU(s)"], []),
        # Not asked to count (the audit, which does not know MIG): as before.
        (seen(1), replace(EIGHT, count_devices=False), [], []),
        # MIG on: CUDA enumerates one MIG compute instance, and torch may list the 8 parents.
        (seen(1), EIGHT_MIG, [], []),
        (seen(8), EIGHT_MIG, [], []),
        (seen(8, failing_after_first=True), EIGHT_MIG, [],
         [f"GPU {i} GPU (sm_90): matmul failed: RuntimeError: invalid device ordinal {MIG_NOTE}"
          for i in range(1, 8)]),
        (probe(available=False, devices=()), EIGHT_MIG,
         ["torch.cuda.is_available() is False: Found no NVIDIA driver on your system. " + MIG_NOTE],
         []),
        # Without MIG the first device is not special.
        (seen(2, failing_after_first=True), replace(EIGHT, gpus=2),
         ["GPU 1 GPU (sm_90): matmul failed"], []),
    ],
)  # fmt: skip
def test_torch_must_see_every_gpu_unless_mig_is_on(found, expected, failures, notes):
    verdict = judge(found, expected)
    assert verdict.passed == (not failures), verdict.failures
    assert len(verdict.failures) == len(failures), verdict.failures
    for failure, text in zip(failures, verdict.failures, strict=True):
        assert text.startswith(failure), text
    assert len(verdict.notes) == len(notes), verdict.notes
    for note, text in zip(notes, verdict.notes, strict=True):
        assert text.startswith(note), text


H100 = Gpu(0, "NVIDIA H100 80GB HBM3", capability=ComputeCapability.parse("9.0"))


@pytest.mark.parametrize(
    ("smi", "gpus", "mig"),
    [
        (SmiReport("570.86", "12.8", tuple(replace(H100, index=i) for i in range(8)), "xml"),
         8, ()),
        (SmiReport("590.48", "13.1", (replace(H100, mig_enabled=True),
                                      replace(H100, index=1, mig_enabled=False)), "xml"),
         2, (0,)),
        (parse_nvidia_smi((FIXTURES / "q_h100-80gb-mig_590.48.01.txt").read_text()), 1, (0,)),
        (parse_nvidia_smi((FIXTURES / "xml_a100-sxm4-80gb-mig_535.54.03.xml").read_text()), None,
         "all"),
        (parse_nvidia_smi((FIXTURES / "table_v100s-x8_535.171.04.txt").read_text()), 8, ()),
        (SmiFailure(SmiFailureKind.DRIVER_NOT_LOADED, "not loaded", "x"), 0, ()),
        (None, 0, ()),
    ],
)  # fmt: skip
def test_the_expectation_counts_gpus_and_knows_which_are_in_mig_mode(smi, gpus, mig):
    first = plan(host("590.48", "13.1", ("NVIDIA H100 80GB HBM3", "9.0")), torch="2.7.1")
    expected = expectation_for(first, origins_for(first, [], CATALOG), smi)
    assert expected.count_devices
    if gpus is not None:
        assert expected.gpus == gpus
    if mig == "all":
        assert expected.mig_gpus == tuple(range(expected.gpus)) and expected.gpus >= 1
    else:
        assert expected.mig_gpus == mig


def test_a_device_torch_cannot_query_fails_the_probe_with_its_error():
    """torch may count a MIG host's GPUs through NVML while CUDA shows one instance: the query
    of the others raises, and the probe records it instead of crashing."""
    error = "RuntimeError: CUDA error: invalid device ordinal"
    found = probe(devices=((None, error),))
    verdict = judge(found, GPU_PLAN)
    assert not verdict.passed
    assert f"GPU 0: torch cannot query it: {error}" in verdict.failures
