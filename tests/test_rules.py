"""The rules engine: the acceptance scenarios, then every release against a set of hosts."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

from labtorch.data.compat import CPU, cuda_key, cuda_of_variant, load_compat
from labtorch.data.files import packaged_data_file
from labtorch.data.gpus import ComputeCapability, Gpu
from labtorch.data.mirrors import load_catalog
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport, parse_nvidia_smi
from labtorch.rules.model import HostFacts, Request, RequestError
from labtorch.rules.plan import plan_for_host

COMPAT = load_compat()
CATALOG = load_catalog()
TUNA_PYTORCH = "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/pytorch"
SMI_CAPTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"


def smi(driver: str | None, cuda: str | None, *gpus: tuple[str, str | None]) -> SmiReport:
    return SmiReport(
        driver_version=driver,
        cuda_version=cuda,
        gpus=tuple(
            Gpu(
                index=i,
                name=name,
                capability=ComputeCapability.parse(cap) if cap else None,
                capability_source="reported" if cap else None,
            )
            for i, (name, cap) in enumerate(gpus)
        ),
        output_format="table",
    )


def host(driver=None, cuda=None, *gpus, platform="linux-64", glibc="2.35", python=None):
    report = smi(driver, cuda, *gpus) if driver or cuda or gpus else None
    return HostFacts(platform=platform, glibc=glibc, python=python, nvidia_smi=report)


def plan(facts: HostFacts, **request):
    return plan_for_host(facts, Request(**request), COMPAT, CATALOG)


def text(p) -> str:
    return "\n".join([*p.reasons, *p.warnings])


A100 = ("NVIDIA A100-SXM4-40GB", "8.0")
GTX1080TI = ("NVIDIA GeForce GTX 1080 Ti", "6.1")
V100 = ("Tesla V100S-PCIE-32GB", "7.0")
RTX5090 = ("NVIDIA GeForce RTX 5090", "12.0")
T4 = ("Tesla T4", "7.5")
H100 = ("NVIDIA H100 80GB HBM3", "9.0")
K80 = ("Tesla K80", "3.7")
RTX4090 = ("NVIDIA GeForce RTX 4090", "8.9")


# ---------------------------------------------------------------- the article's scenario


@pytest.mark.parametrize(
    ("driver", "cuda", "variant"),
    [
        ("520.61.05", "11.8", "cu118"),
        ("522.06", "11.9", "cu118"),
        ("530.30.02", "12.1", "cu121"),
        ("535.54.03", "12.2", "cu121"),
        ("550.144.03", "12.4", "cu121"),
        ("580.126.09", "13.0", "cu121"),
    ],
)
def test_article_torch_2_3_1_conda_pytorch_channel(driver, cuda, variant):
    p = plan(host(driver, cuda, A100), torch="2.3.1", installer="conda", python="3.11")
    assert not p.refused
    assert p.variant == variant
    cudnn = {"cu118": "8.7.0", "cu121": "8.9.2"}[variant]
    build = f"py3.11_cuda{cuda_of_variant(variant)}_cudnn{cudnn}_0"
    assert p.torch.spec == f"pytorch=2.3.1={build}"
    assert p.torch.url == TUNA_PYTORCH
    assert p.channels == ("pytorch", "nvidia", "defaults")
    assert TUNA_PYTORCH in p.channel_urls
    assert "https://mirrors.sustech.edu.cn/anaconda-extra/cloud/nvidia" in p.channel_urls
    assert any("pytorch-cuda" in w and "nvidia" in w and "does not mirror" in w for w in p.warnings)
    # the driver rule in the reader's terms: the driver's CUDA is a ceiling, not a match
    reader = [r for r in p.reasons if r.startswith(f"a driver that shows CUDA {cuda} runs")]
    assert len(reader) == 1
    assert (
        "the 11.8 and 12.1 in the build names are the CUDA the builds were made with" in (reader[0])
    )
    if cuda_key(cuda) > cuda_key(cuda_of_variant(variant)):
        assert "newer driver runs older CUDA builds" in reader[0]
    else:
        assert "newer driver runs older" not in reader[0]


@pytest.mark.parametrize(("driver", "cuda"), [("515.65.01", "11.7"), ("470.74", "11.4")])
def test_article_old_driver_gets_cpu_with_reason(driver, cuda):
    p = plan(host(driver, cuda, A100), torch="2.3.1", installer="conda", driver_policy="strict")
    assert not p.refused
    assert p.variant == CPU
    assert p.torch.build == "py3.12_cpu_0"
    assert any("too old for every CUDA build" in r for r in p.reasons)
    assert any("upgrade the NVIDIA driver" in w and "cu118" in w for w in p.warnings)
    assert [pin.name for pin in p.packages] == ["pytorch", "torchvision", "torchaudio", "cpuonly"]


@pytest.mark.parametrize(("driver", "cuda"), [("515.65.01", "11.7"), ("470.74", "11.4")])
def test_article_old_driver_under_auto_runs_cu118_by_minor_compat(driver, cuda):
    # CUDA 11.x minor-version compatibility needs >= 450.80.02; the A100 has sm_80 SASS.
    p = plan(host(driver, cuda, A100), torch="2.3.1", installer="conda")
    assert p.variant == "cu118"
    assert any("minor-version compatibility" in r and "sm_80" in r for r in p.reasons)
    assert any("520.61.05 or newer (CUDA 11.8)" in w for w in p.warnings)


def test_article_minor_policy_accepts_older_toolkit_driver():
    # CUDA 12.0 driver (525.x): strict refuses cu121, minor-version compatibility runs it.
    strict = plan(host("525.147.05", "12.0", A100), torch="2.3.1", driver_policy="strict")
    minor = plan(host("525.147.05", "12.0", A100), torch="2.3.1", driver_policy="minor")
    assert strict.variant == "cu118"
    assert minor.variant == "cu121"
    assert any("minor-version compatibility" in r for r in minor.reasons)


# ---------------------------------------------------------------- pip acceptance


def test_gtx_1080_ti_on_580_with_torch_2_9_gets_cu126():
    p = plan(host("580.126.09", "13.0", GTX1080TI), torch="2.9", installer="pip", python="3.12")
    assert p.variant == "cu126"
    assert p.torch.spec == "torch==2.9.1+cu126"
    assert [pin.spec for pin in p.packages[1:]] == [
        "torchvision==0.24.1+cu126",
        "torchaudio==2.9.1+cu126",
    ]
    why = text(p)
    assert "not cu130: it has no kernels for GPU 0 NVIDIA GeForce GTX 1080 Ti (sm_61)" in why
    assert "not cu128: it has no kernels for GPU 0 NVIDIA GeForce GTX 1080 Ti (sm_61)" in why
    assert "sm_60" in why
    assert p.wheel_index == ("flat", "https://mirrors.aliyun.com/pytorch-wheels/cu126/")
    assert p.index_url == "https://pypi.tuna.tsinghua.edu.cn/simple"


def test_rtx_5090_with_torch_2_6_is_refused_naming_2_7():
    p = plan(host("575.51.03", "12.9", RTX5090), torch="2.6", installer="pip")
    assert p.refused
    assert p.variant is None
    assert "the first release that does is 2.7 (cu128" in text(p)


def test_v100_torch_2_11_driver_570_gets_cu126():
    p = plan(host("570.133.20", "12.8", V100), torch="2.11", installer="pip")
    assert p.variant == "cu126"
    why = text(p)
    assert "not cu130: it has no kernels for GPU 0 Tesla V100S-PCIE-32GB (sm_70)" in why
    assert "not cu128: it has no kernels for GPU 0 Tesla V100S-PCIE-32GB (sm_70)" in why


@pytest.mark.parametrize(
    ("capture", "kind", "what_to_do"),
    [
        (
            "err_driver-not-loaded.txt",
            SmiFailureKind.DRIVER_NOT_LOADED,
            "(modprobe nvidia) or reboot",
        ),
        ("err_nvml-version-mismatch_570.124.txt", SmiFailureKind.NVML_MISMATCH, "Reboot the host"),
        ("err_no-devices-found_rtx5090.txt", SmiFailureKind.NO_DEVICES, "see the kernel log"),
        ("err_device-handle-unknown-error_2024.txt", SmiFailureKind.DEVICE_HANDLE, "Xid errors"),
    ],
)
def test_broken_driver_is_reported_not_planned_as_cpu(capture, kind, what_to_do):
    """A real failing nvidia-smi output: the plan is a refusal that names the failure and says
    what to do (the words come from classifying the capture, not from this test)."""
    failure = parse_nvidia_smi((SMI_CAPTURES / capture).read_text())
    assert isinstance(failure, SmiFailure) and failure.kind is kind
    facts = HostFacts(platform="linux-64", nvidia_smi=failure)
    p = plan(facts, torch="2.9", installer="pip")
    assert p.refused and p.variant is None and p.torch is None
    assert p.reasons[-1] == f"nvidia-smi failed ({kind.value}): {failure.meaning}"
    assert what_to_do in p.reasons[-1]
    cpu = plan(facts, torch="2.9", installer="pip", variant="cpu")
    assert cpu.variant == CPU and not cpu.refused
    assert cpu.torch.spec == "torch==2.9.1+cpu"
    assert f"nvidia-smi failed ({kind.value}): {failure.meaning}" in cpu.warnings


def test_no_nvidia_smi_is_a_cpu_plan_with_reason():
    p = plan(host(), torch="2.9", installer="pip", python="3.12")
    assert p.variant == CPU
    assert p.torch.spec == "torch==2.9.1+cpu"
    assert "no NVIDIA driver" in text(p)
    assert p.wheel_index == ("flat", "https://mirrors.aliyun.com/pytorch-wheels/cpu/")


def test_command_not_found_counts_as_no_driver():
    facts = HostFacts(nvidia_smi=SmiFailure(SmiFailureKind.COMMAND_NOT_FOUND, "m", "d"))
    assert plan(facts, torch="2.3.1").variant == CPU


# ---------------------------------------------------------------- more decisions


@pytest.mark.parametrize(("release", "variant"), [("1.13.1", "cu117"), ("2.7.1", "cu118")])
def test_kepler_on_driver_470_runs_cuda_11_under_minor_compat(release, variant):
    p = plan(HOSTS["k80-470"], torch=release, installer="pip", driver_policy="minor")
    assert p.variant == variant
    assert "minor-version compatibility" in text(p)


def test_pypi_default_comes_from_tuna_pypi_without_label():
    p = plan(host("570.133.20", "12.8", H100), torch="2.9", installer="pip", python="3.12")
    assert p.variant == "cu128"
    assert p.torch.spec == "torch==2.9.1"
    assert p.torch.url == "https://pypi.tuna.tsinghua.edu.cn/simple"
    assert p.wheel_index is None


def test_conda_forge_route_for_modern_release():
    p = plan(host("570.133.20", "12.8", RTX4090), torch="2.7.1", installer="conda", python="3.12")
    assert p.channels == ("conda-forge",)
    assert p.torch.spec == "pytorch=2.7.1=cuda126_*_py312_*"
    assert ("cuda-version", "12.6") in [(pin.name, pin.version) for pin in p.packages]
    assert p.channel_urls == ("https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge",)
    # conda-forge's 12.6 arch list is known now (recipe/build.sh "12.[0-6]"): sm_89 runs sm_86.
    assert not any("arch list" in w for w in p.warnings)
    assert "sm_89" in text(p)  # conda-forge's 12.6 builds have Ada SASS
    # 2.7.1 builds 1-4 are CUDA 12.9: a driver that supports it gets them.
    newer = plan(host("575.51.03", "12.9", RTX4090), torch="2.7.1", installer="conda")
    assert newer.torch.spec.startswith("pytorch=2.7.1=cuda129_")


def test_conda_forge_prefers_the_cuda_13_build_when_driver_allows():
    p = plan(host("590.48.01", "13.1", H100), torch="2.13", installer="conda", python="3.12")
    assert p.variant == "cu130"
    cuda_12_9 = plan(host("575.51.03", "12.9", H100), torch="2.13", installer="conda")
    assert cuda_12_9.variant == "cu129"
    # conda-forge builds 12.9 and 13.0 only: a CUDA 12.8 driver runs them only under minor compat.
    strict = plan(
        host("570.133.20", "12.8", H100), torch="2.13", installer="conda", driver_policy="strict"
    )
    assert strict.variant == CPU and "too old" in text(strict)
    minor = plan(host("570.133.20", "12.8", H100), torch="2.13", driver_policy="minor")
    assert minor.variant == "cu129"
    auto = plan(host("570.133.20", "12.8", H100), torch="2.13", installer="conda")
    assert auto.variant == "cu129"
    assert any("575.51.03 or newer (CUDA 12.9)" in w for w in auto.warnings)


def test_conda_release_on_neither_channel_is_refused():
    p = plan(host("590.48.01", "13.1", H100), torch="2.14.1", installer="conda")
    assert p.refused
    assert "--installer pip" in text(p)


def test_conda_channel_forced_pytorch_after_2_5_is_refused():
    p = plan(host("550.144.03", "12.4", A100), torch="2.6", conda_channel="pytorch")
    assert p.refused
    assert "stops at 2.5.1" in text(p)


def test_mixed_gpus_need_kernels_for_every_gpu():
    p = plan(host("575.51.03", "12.9", RTX5090, GTX1080TI), torch="2.8", installer="pip")
    assert p.refused  # cu126 lacks sm_120, cu128/cu129 lack sm_61
    both = plan(host("575.51.03", "12.9", RTX4090, GTX1080TI), torch="2.8", installer="pip")
    assert both.variant == "cu126"


def test_auto_never_runs_ptx_jit_under_minor_compatibility():
    # 2.8 via pip on a CUDA 12.8 driver: only cu129 covers a GPU newer than sm_120, through
    # compute_120 PTX. The driver runs CUDA 12.9 only by minor-version compatibility, which
    # cannot JIT PTX from a newer toolkit: auto gives the CPU build and says why.
    future = ("Future GPU", "13.0")
    p = plan(host("570.133.20", "12.8", future), torch="2.8", installer="pip", python="3.12")
    assert p.variant == CPU
    why = text(p)
    assert "not cu129 under minor-version compatibility" in why
    assert "would JIT compute_120" in why
    # the same GPU on a driver that supports CUDA 12.9 runs the PTX in full
    full = plan(host("575.51.03", "12.9", future), torch="2.8", installer="pip", python="3.12")
    assert full.variant == "cu129" and "compute_120" in text(full)
    # minor keeps the build the admin asked for, with the warning
    minor = plan(
        host("570.133.20", "12.8", future), torch="2.8", installer="pip", driver_policy="minor"
    )
    assert minor.variant == "cu129"
    assert any("expect it to fail" in w for w in minor.warnings)


def test_auto_with_a_fixed_variant_accepts_minor_compatibility_with_sass_only():
    v100 = host("535.171.04", "12.2", V100)
    p = plan(v100, torch="2.8", installer="pip", variant="cu129")
    assert p.variant == "cu129"
    assert any("only through CUDA minor-version compatibility" in w for w in p.warnings)
    strict = plan(v100, torch="2.8", installer="pip", variant="cu129", driver_policy="strict")
    assert strict.refused
    future = host("570.133.20", "12.8", ("Future GPU", "13.0"))
    jit = plan(future, torch="2.8", installer="pip", variant="cu129")
    assert jit.refused and "JIT of compute_120" in text(jit)


def test_ptx_covers_a_newer_gpu():
    future = ("Future GPU", "13.0")
    p = plan(host("595.71.05", "13.2", future), torch="2.13", installer="pip")
    assert p.variant == "cu132"
    assert "compute_120" in text(p)


def test_unknown_capability_refuses_auto_but_allows_fixed_variant():
    mystery = ("Graphics Device", None)
    auto = plan(host("570.133.20", "12.8", mystery), torch="2.9", installer="pip")
    assert auto.refused and "compute capability" in text(auto)
    fixed = plan(host("570.133.20", "12.8", mystery), torch="2.9", installer="pip", variant="cu126")
    assert fixed.variant == "cu126"
    assert any("compute capability" in w for w in fixed.warnings)


@pytest.mark.parametrize(
    ("variant", "facts", "needle"),
    [
        (
            "cu124",
            host("570.133.20", "12.8", A100),
            "has no cu124 build (it has cpu, cu126, cu128, cu130)",
        ),
        ("cu128", host("570.133.20", "12.8", GTX1080TI), "cu128 has no kernels for GPU 0"),
        ("cu130", host("570.133.20", "12.8", A100), "the driver supports CUDA 12.8 only"),
        ("cu126", host(), "has no NVIDIA driver"),
    ],
)
def test_fixed_variant_refusals(variant, facts, needle):
    p = plan(facts, torch="2.9", installer="pip", variant=variant)
    assert p.refused
    assert needle in text(p)


def test_fixed_cpu_on_gpu_host_warns():
    p = plan(host("570.133.20", "12.8", A100), torch="2.9", installer="pip", variant="cpu")
    assert p.variant == CPU
    assert any("will not use" in w for w in p.warnings)


@pytest.mark.parametrize(
    ("facts", "request_", "needle"),
    [
        (
            host("570.133.20", "12.8", A100, python="3.8"),
            {"torch": "2.9", "installer": "pip"},
            "supports Python 3.10 to 3.14, not 3.8",
        ),
        (
            host("570.133.20", "12.8", A100, glibc="2.17"),
            {"torch": "2.7", "installer": "pip"},
            "need glibc 2.28 or newer; this host has glibc 2.17",
        ),
        (host(platform="osx-64"), {"torch": "2.5", "installer": "pip"}, "no macOS x86_64 build"),
        (
            HostFacts(platform="osx-arm64", macos="13.6"),
            {"torch": "2.12", "installer": "pip"},
            "needs macOS 14.0 or newer",
        ),
    ],
)
def test_platform_refusals(facts, request_, needle):
    p = plan(facts, **request_)
    assert p.refused
    assert needle in text(p)


def test_glibc_2_17_still_gets_2_6():
    """2.6's wheels are manylinux2014 (glibc 2.17): the newest CUDA build the driver runs, with
    its label (2.6's PyPI default is cu124); 2.7 needs glibc 2.28 and is refused, saying so."""
    facts = host("570.133.20", "12.8", A100, glibc="2.17")
    p = plan(facts, torch="2.6", installer="pip")
    assert not p.refused
    assert (p.variant, p.torch.spec) == ("cu126", "torch==2.6.0+cu126")
    newer = plan(facts, torch="2.7", installer="pip")
    assert newer.refused and "glibc" in text(newer) and "2.28" in text(newer)


def test_windows_pip_cuda_comes_from_wheel_index():
    facts = host("576.88", "12.9", RTX4090, platform="win-64")
    p = plan(facts, torch="2.7.1", installer="pip", python="3.12")
    assert p.variant == "cu128"
    assert p.torch.spec == "torch==2.7.1+cu128"


def test_aarch64_gh200_gets_cu130_from_pypi_from_2_11():
    facts = host("590.48.01", "13.1", ("NVIDIA GH200 120GB", "9.0"), platform="linux-aarch64")
    p = plan(facts, torch="2.11", installer="pip", python="3.12")
    assert p.variant == "cu130"
    assert p.torch.spec == "torch==2.11.0"
    older = plan(facts, torch="2.10", installer="pip", python="3.12")
    assert older.refused  # no aarch64 CUDA build known before 2.11


def test_toolkit_pins():
    conda = plan(host("575.51.03", "12.9", H100), torch="2.9", installer="conda", toolkit=True)
    assert [pin.spec for pin in conda.toolkit] == ["cuda-nvcc=12.9.*"]
    old = plan(host("530.30.02", "12.1", A100), torch="2.3.1", toolkit=True)
    assert old.toolkit[0].source == "conda-forge"
    assert old.channels == ("pytorch", "nvidia", "conda-forge", "defaults")
    cu118 = plan(host("520.61.05", "11.8", A100), torch="2.3.1", toolkit=True)
    assert cu118.toolkit[0].source == "nvidia"
    pip = plan(host("570.133.20", "12.8", H100), torch="2.9", installer="pip", toolkit=True)
    assert [pin.spec for pin in pip.toolkit] == ["nvidia-cuda-nvcc-cu12==12.8.*"]
    cpu = plan(host(), torch="2.9", installer="pip", toolkit=True)
    assert cpu.toolkit == () and any("toolkit" in w for w in cpu.warnings)


def test_unconfirmed_data_shows_in_the_plan():
    p = plan(host("595.71.05", "13.2", H100), torch="2.15", installer="pip", python="3.12")
    assert p.variant == "cu132"
    assert any("unconfirmed" in w for w in p.warnings)
    assert any("no torchvision release pairs with torch 2.15.0" in w for w in p.warnings)
    later = plan(host("595.71.05", "13.2", H100), torch="2.14.1", installer="pip")
    assert any("torch 2.14.1 is not confirmed" in w for w in later.warnings)
    assert not any(
        "torch 2.14.0 is not confirmed" in w
        for w in plan(host("595.71.05", "13.2", H100), torch="2.14.0", installer="pip").warnings
    )
    # The old pytorch channel's cuDNN versions are read from the builder scripts now.
    cudnn = plan(host("520.61.05", "11.8", A100), torch="2.3.1")
    assert not any("cudnn" in w for w in cudnn.warnings)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"torch": "2.16"}, "unknown torch release 2.16"),
        ({"torch": "2.3.1", "variant": "cu999"}, "unknown variant 'cu999'"),
        ({"torch": "2.3.1", "variant": "rocm6.0"}, "unknown variant 'rocm6.0'"),
        ({"torch": "2.3.1", "installer": "poetry"}, "unknown installer"),
        ({"torch": "2.3.1", "driver_policy": "lax"}, "unknown driver policy"),
        ({"torch": "2.3.1", "mirror": "nowhere"}, "unknown mirror 'nowhere'"),
        (
            {"torch": "2.9", "installer": "pip", "wheel_mirror": "tuna"},
            "has no PyTorch wheel index",
        ),
    ],
)
def test_bad_requests(request_, message):
    with pytest.raises(RequestError, match=message):
        plan(host("570.133.20", "12.8", GTX1080TI), **request_)


def test_unknown_platform():
    with pytest.raises(RequestError, match="unknown platform"):
        plan(HostFacts(platform="linux-ppc64le"), torch="2.3.1")


# ---------------------------------------------------------------- every release on a set of hosts

HOSTS = {
    "no-gpu": host(),
    "k80-470": host("470.82.01", "11.4", K80),
    "gtx1080ti-560": host("560.35.03", "12.6", GTX1080TI),
    "gtx1080ti-580": host("580.126.09", "13.0", GTX1080TI),
    "v100-535": host("535.171.04", "12.2", V100),
    "v100-580": host("580.126.09", "13.0", V100),
    "t4-520": host("520.61.05", "11.8", T4),
    "a100-550": host("550.144.03", "12.4", A100),
    "rtx4090-575": host("575.51.03", "12.9", RTX4090),
    "h100-590": host("590.48.01", "13.1", H100),
    "rtx5090-575": host("575.51.03", "12.9", RTX5090),
    "rtx5090-595": host("595.71.05", "13.2", RTX5090),
}
RELEASES = [patch for release in COMPAT.releases.values() for patch in release.patches]

# The matrix's oracle works from the data files as text, with rules of its own, so that a mistake
# in labtorch's loader or in its coverage and driver functions cannot agree with itself.
RAW_FILE = yaml.safe_load(packaged_data_file("releases.yaml").read_text())
RAW = RAW_FILE["releases"]
# NVIDIA's minor-version compatibility floors (torch-matrix.md §2.1, Table 1): per CUDA major.
MINOR_FLOOR = {11: (450, 80, 2), 12: (525, 60, 13), 13: (580,)}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _variant_cuda(variant: str) -> tuple[int, int]:
    """cu126 -> (12, 6), cu118 -> (11, 8)."""
    digits = variant.removeprefix("cu")
    return int(digits[:-1]), int(digits[-1])


def _raw_line(release: str) -> dict:
    return next(line for line in RAW.values() if release in line["patches"])


def _targets(arch: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """A TORCH_CUDA_ARCH_LIST as written: its SASS targets and its PTX targets."""
    sass, ptx = [], []
    for entry in arch.split(";"):
        name, _, suffix = entry.partition("+")
        major, minor = _version(name)
        sass.append((major, minor))
        if suffix == "PTX":
            ptx.append((major, minor))
    return sass, ptx


def _capabilities(facts: HostFacts) -> list[tuple[int, int]]:
    return [(gpu.capability.major, gpu.capability.minor) for gpu in facts.nvidia_smi.gpus]


def _sass_runs(arch: str, facts: HostFacts) -> bool:
    """SASS for X.y runs on X.z when z >= y, never across majors."""
    sass, _ = _targets(arch)
    return all(any(s[0] == c[0] and s[1] <= c[1] for s in sass) for c in _capabilities(facts))


def _covers(arch: str, facts: HostFacts) -> bool:
    """SASS as above, or PTX of an architecture no newer than the GPU (JIT-compiled)."""
    sass, ptx = _targets(arch)
    return all(
        any(s[0] == c[0] and s[1] <= c[1] for s in sass) or any(x <= c for x in ptx)
        for c in _capabilities(facts)
    )


def _driver_runs_strict(facts: HostFacts, variant: str) -> bool:
    return _version(facts.nvidia_smi.cuda_version) >= _variant_cuda(variant)


def _driver_runs_minor_with_sass(facts: HostFacts, variant: str, arch: str) -> bool:
    """CUDA minor-version compatibility (the major's driver floor, NVIDIA Table 1) and compiled
    kernels for every GPU: what driver policy auto accepts when no build runs strictly."""
    floor = MINOR_FLOOR[_variant_cuda(variant)[0]]
    return _version(facts.nvidia_smi.driver_version) >= floor and _sass_runs(arch, facts)


def _newest(variants):
    return max(variants, key=_variant_cuda)


@pytest.mark.parametrize("policy", ["auto", "strict"])
@pytest.mark.parametrize(("release", "host_name"), list(itertools.product(RELEASES, HOSTS)))
def test_every_release_on_every_host_pip(release, host_name, policy):
    facts = HOSTS[host_name]
    line = _raw_line(release)
    python = line["python"]["max"]
    p = plan(facts, torch=release, installer="pip", python=python, driver_policy=policy)
    assert p.reasons, "every plan explains itself"
    if facts.nvidia_smi is None:
        assert p.variant == CPU and p.torch.spec == f"torch=={release}+cpu"
        return
    variants = line["variants"]
    covering = [v for v, arch in variants.items() if _covers(arch, facts)]
    runnable = [v for v in covering if _driver_runs_strict(facts, v)]
    minor = [v for v in covering if _driver_runs_minor_with_sass(facts, v, variants[v])]
    if not covering:
        assert p.refused and "no CUDA build" in text(p)
        return
    assert not p.refused
    if not runnable and (policy == "strict" or not minor):
        assert p.variant == CPU and "too old" in text(p)
        assert p.torch.spec == f"torch=={release}+cpu"
        return
    if not runnable:
        assert p.variant == _newest(minor)
        assert any("minor-version compatibility" in w for w in p.warnings)
        return
    newest = _newest(runnable)
    assert p.variant == newest
    label = "" if newest == line["pypi_default"] else f"+{newest}"
    assert p.torch.spec == f"torch=={release}{label}"


@pytest.mark.parametrize(
    ("release", "host_name", "variant"),
    [
        ("1.13.1", "k80-470", "cpu"),
        ("2.0.1", "t4-520", "cu118"),
        ("2.3.1", "a100-550", "cu121"),
        ("2.5.1", "a100-550", "cu124"),
        ("2.6.0", "rtx5090-575", None),
        ("2.7.1", "rtx5090-575", "cu128"),
        ("2.7.1", "k80-470", "cpu"),
        ("2.8.0", "k80-470", None),
        ("2.8.0", "v100-535", "cpu"),
        ("2.8.0", "gtx1080ti-560", "cu126"),
        ("2.9.1", "v100-580", "cu128"),
        ("2.10.0", "rtx4090-575", "cu128"),
        ("2.11.0", "v100-580", "cu126"),
        ("2.11.0", "h100-590", "cu130"),
        ("2.12.1", "rtx5090-595", "cu132"),
        ("2.14.1", "gtx1080ti-580", "cu126"),
        ("2.15.0", "gtx1080ti-580", None),
        ("2.15.0", "h100-590", "cu130"),
        ("2.15.0", "rtx5090-595", "cu132"),
    ],
)
def test_expected_variants(release, host_name, variant):
    p = plan(HOSTS[host_name], torch=release, installer="pip", driver_policy="strict")
    assert p.variant == variant
    assert p.refused == (variant is None)


@pytest.mark.parametrize(
    ("release", "host_name", "variant", "why"),
    [
        ("1.13.1", "k80-470", "cu117", "sm_37"),  # CUDA 11.x minor compatibility (>= 450.80.02)
        ("2.7.1", "k80-470", "cu118", "sm_37"),
        ("2.8.0", "v100-535", "cu129", "sm_70"),  # CUDA 12.x minor compatibility (>= 525.60.13)
        ("2.8.0", "a100-550", "cu129", "sm_80"),
        ("2.11.0", "a100-550", "cu128", "sm_80"),  # not cu130: CUDA 13 needs >= 580 even so
        ("2.3.1", "a100-550", "cu121", None),  # strict runs: no minor compatibility needed
    ],
)
def test_expected_variants_auto(release, host_name, variant, why):
    p = plan(HOSTS[host_name], torch=release, installer="pip")
    assert p.variant == variant
    minor = [w for w in p.warnings if "minor-version compatibility" in w]
    if why is None:
        assert not minor
    else:
        assert minor and why in text(p)


def _conda_refusal(release: str, facts: HostFacts) -> str | None:
    """Why a conda plan for ``release`` on linux-64 must be refused (the reason's start), from
    the data as text: not on the pytorch channel (after its last release) and conda-forge has no
    build; or a GPU that no CUDA build of the route has kernels or PTX for."""
    last = RAW_FILE["conda_pytorch_channel"]["last_release"]
    line = _raw_line(release)
    groups = (line.get("conda_forge") or {}).get(release, {}).values()
    forge = [g["linux-64"] for g in groups if "linux-64" in g]
    if Version(release) > Version(last):
        if not forge:
            return (
                f"the pytorch conda channel stops at {last} and conda-forge has no pytorch "
                f"{release} for linux-64"
            )
        if facts.nvidia_smi is None:
            return None
        channel = RAW_FILE["conda_forge"]["arch"]
        lists = [
            (g.get("arch") or {}).get("linux-64", {}).get(v)
            or channel[".".join(map(str, _variant_cuda(v)))]
            for g in groups
            if "linux-64" in g
            for v in g["linux-64"]
            if v != CPU
        ]
        if not any(_covers(arch, facts) for arch in lists):
            gpu = facts.nvidia_smi.gpus[0]
            return (
                f"no CUDA build of torch {release} from conda-forge has kernels or PTX that run "
                f"on GPU 0 {gpu.name}"
            )
    return None


@pytest.mark.parametrize(("release", "host_name"), list(itertools.product(RELEASES, HOSTS)))
def test_every_release_on_every_host_conda(release, host_name):
    facts = HOSTS[host_name]
    p = plan(facts, torch=release, installer="conda")
    assert p.reasons
    refusal = _conda_refusal(release, facts)
    assert p.refused == (refusal is not None), text(p)
    if refusal is not None:
        assert p.reasons[-1].startswith(refusal), p.reasons[-1]
        return
    assert p.channels and p.channel_urls
    assert all(url.startswith("https://mirrors.") for url in p.channel_urls)
    assert p.torch.name == "pytorch" and p.torch.build
    if p.variant == CPU:
        assert "cpu" in p.torch.build
    else:
        assert cuda_of_variant(p.variant).replace(".", "") in p.torch.build.replace(".", "")


def test_a_mirror_without_the_routes_channel_is_a_request_error():
    with pytest.raises(
        RequestError, match="sustech does not mirror the conda channel 'conda-forge'"
    ):
        plan(host("570.86", "12.8", H100), torch="2.7.1", installer="conda", mirror="sustech")
