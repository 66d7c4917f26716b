"""What the real builds of torch that the simulated mirror stands in for report about CUDA.

For each CUDA build the mirror serves: ``torch.version.cuda`` and ``torch.cuda.get_arch_list()``
of the real build (the SASS targets ``sm_XY`` in ascending order, then the embedded PTX
``compute_XY``, as torch prints them), each row with where it was read. The stand-in torch takes
its CUDA version and arch list from here (``mirror_content.torch_build``), never from
``labtorch/data/releases.yaml``: the planner reads that file, and a stand-in built from it would
agree with any mistake in it. tests/test_standin_builds.py shows that a wrong arch list in
releases.yaml makes the plan fail against these builds.

A build the mirror serves without a row here is an error, not a guess: record it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["wheel", "conda", "forge"]

_BUILDER_23 = (
    "pytorch/builder release/2.3 conda/pytorch-nightly/build.sh: TORCH_CUDA_ARCH_LIST="
    '"5.0;6.0;6.1;7.0;7.5;8.0;8.6", then ";3.7+PTX;9.0" for CUDA 11.8 and ";9.0" for 12.1'
)
_MOI90 = (
    "cuobjdump of the package's libraries, moi90/pytorch_compute_capabilities table.md @cc04451, "
    "row pytorch-2.3.1-py3.11_cuda{cuda}_cudnn{cudnn}_0: {sass}"
)
_LIST_FORM = (
    "the list's form (sm_ ascending, then compute_37 for 3.7+PTX) as a conda build of this "
    "channel prints it: 1.13.0 cuda11.7 get_arch_list() ['sm_37', 'sm_50', 'sm_60', 'sm_61', "
    "'sm_70', 'sm_75', 'sm_80', 'sm_86', 'compute_37'] in MIC-DKFZ/nnDetection#220"
)
_FEEDSTOCK = (
    "conda-forge/pytorch-cpu-feedstock @{commit} ({what}): .ci_support linux_64 "
    'cuda_compiler_version{cuda}; recipe/build.sh `{case}) TORCH_CUDA_ARCH_LIST="{arch}"` and '
    "`export CUDA_VERSION=$cuda_compiler_version` (torch.version.cuda)"
)
_MANYWHEEL = (
    'pytorch/pytorch .ci/manywheel/build_cuda.sh @799d09f2 (2.9): base "7.0;7.5;8.0;8.6;9.0", '
    "{how}; RELEASE.md's 2.9 CUDA support matrix (pytorch/pytorch#164471): {matrix}; printed by "
    "{printed} (same script), pytorch/pytorch#182250: {observed}"
)


@dataclass(frozen=True)
class RealBuild:
    """One real build: where it is served from, and what it reports."""

    source: Source  # wheel: download.pytorch.org and PyPI; conda: the pytorch channel; forge
    torch: str
    variant: str
    cuda: str  # torch.version.cuda
    arch_list: tuple[str, ...]  # torch.cuda.get_arch_list()
    read_from: str


BUILDS: tuple[RealBuild, ...] = (
    RealBuild(
        "conda",
        "2.3.1",
        "cu118",
        "11.8",
        ("sm_37", "sm_50", "sm_60", "sm_61", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90",
         "compute_37"),
        "; ".join([
            _MOI90.format(cuda="11.8", cudnn="8.7.0",
                          sass="sm_37, sm_50, sm_60, sm_61, sm_70, sm_75, sm_80, sm_86, sm_90"),
            _BUILDER_23, _LIST_FORM, "CUDA: the build string's cuda11.8",
        ]),
    ),
    RealBuild(
        "conda",
        "2.3.1",
        "cu121",
        "12.1",
        ("sm_50", "sm_60", "sm_61", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
        "; ".join([
            _MOI90.format(cuda="12.1", cudnn="8.9.2",
                          sass="sm_50, sm_60, sm_61, sm_70, sm_75, sm_80, sm_86, sm_90"),
            _BUILDER_23, "no PTX", "CUDA: the build string's cuda12.1",
        ]),
    ),
    RealBuild(
        "forge",
        "2.7.1",
        "cu126",
        "12.6",
        ("sm_50", "sm_60", "sm_61", "sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90",
         "compute_90"),
        _FEEDSTOCK.format(commit="55fb9b87", what="2.7.1 build 0", cuda="12.6", case="12.[0-6]",
                          arch="5.0;6.0;6.1;7.0;7.5;8.0;8.6;8.9;9.0+PTX"),
    ),
    RealBuild(
        "forge",
        "2.7.1",
        "cu129",
        "12.9",
        ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120",
         "compute_120"),
        _FEEDSTOCK.format(commit="d21fc6db", what="v2.7.x, 2.7.1 build 4", cuda="12.9",
                          case="12.[89]", arch="5.0;6.0;7.0;7.5;8.0;8.6;9.0;10.0;12.0+PTX"),
    ),
    RealBuild(
        "wheel",
        "2.9.1",
        "cu126",
        "12.6",
        ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
        _MANYWHEEL.format(
            how='12.6: "5.0;6.0;" before it, no PTX',
            matrix="12.6.3 Maxwell(5.0), Pascal(6.0), Volta(7.0), Turing(7.5), Ampere(8.0, 8.6), "
            "Hopper(9.0)",
            printed="2.11.0+cu126",
            observed="['sm_50', 'sm_60', 'sm_70', 'sm_75', 'sm_80', 'sm_86', 'sm_90']",
        ),
    ),
    RealBuild(
        "wheel",
        "2.9.1",
        "cu128",
        "12.8",
        ("sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
        _MANYWHEEL.format(
            how='12.8: ";10.0;12.0" after it, no PTX (only 12.9 adds +PTX)',
            matrix="12.8.1 Volta(7.0), Turing(7.5), Ampere(8.0, 8.6), Hopper(9.0), "
            "Blackwell(10.0, 12.0)",
            printed="2.10.0+cu128",
            observed="['sm_70', 'sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120']",
        )
        + "; PyPI's 2.9.1 (no label) is this build: it pins nvidia-cuda-runtime-cu12==12.8.90 "
        "(torch-matrix.md §1.2)",
    ),
)  # fmt: skip


def real_build(source: Source, torch: str, variant: str) -> RealBuild:
    """The recorded real build; KeyError naming what to record when there is none."""
    for build in BUILDS:
        if (build.source, build.torch, build.variant) == (source, torch, variant):
            return build
    raise KeyError(
        f"no real {source} build of torch {torch} {variant} is recorded in "
        "labtorch_sim/real_builds.py: record its torch.version.cuda and "
        "torch.cuda.get_arch_list(), with where they were read, before the mirror serves it"
    )
