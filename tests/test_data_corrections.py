"""Issue 12's corrections of the compatibility data, row by row, and what each changes in a plan.

Each row names its source in the data file beside the datum; these tests pin the corrected
facts so that an edit that undoes one fails here, naming the row.
"""

from __future__ import annotations

import pytest

from labtorch.data.compat import CPU, ArchList, load_compat
from labtorch.data.gpu_catalog import gpu_catalog
from labtorch.data.gpus import ComputeCapability, Gpu
from labtorch.data.mirrors import load_catalog
from labtorch.facts.nvidia_smi import SmiReport
from labtorch.rules.model import HostFacts, Request
from labtorch.rules.plan import plan_for_host

COMPAT = load_compat()
CATALOG = load_catalog()


def cc(text: str) -> ComputeCapability:
    return ComputeCapability.parse(text)


def host(driver, cuda, *gpus, platform="linux-64"):
    report = SmiReport(
        driver_version=driver,
        cuda_version=cuda,
        gpus=tuple(
            Gpu(index=i, name=name, capability=cc(cap), capability_source="reported")
            for i, (name, cap) in enumerate(gpus)
        ),
        output_format="table",
    )
    return HostFacts(platform=platform, glibc="2.35", nvidia_smi=report)


def plan(facts, **request):
    return plan_for_host(facts, Request(**request), COMPAT, CATALOG)


def text(p) -> str:
    return "\n".join([*p.reasons, *p.warnings])


def forge(line: str):
    return COMPAT.releases[line].conda_forge


# ------------------------------------------------------------ conda-forge, per patch and build


@pytest.mark.parametrize(
    ("line", "patch", "subdir", "variants"),
    [
        # 2.4: the v2.4.x branch ends at 2.4.1; CUDA 11.8 and 12.0 on linux-64, 12.0 on aarch64
        ("2.4", "2.4.0", "linux-64", ("cu118", "cu120")),
        ("2.4", "2.4.1", "linux-64", ("cu118", "cu120")),
        ("2.4", "2.4.1", "linux-aarch64", ("cu120",)),
        ("2.4", "2.4.1", "win-64", ()),
        # 2.7.1 builds 1-4: CUDA 12.9 on Linux, 12.8 on win-64 (build 0: 12.6)
        ("2.7", "2.7.0", "linux-64", ("cu126",)),
        ("2.7", "2.7.1", "linux-64", ("cu126", "cu129")),
        ("2.7", "2.7.1", "linux-aarch64", ("cu126", "cu129")),
        ("2.7", "2.7.1", "win-64", ("cu126", "cu128")),
        # 2.10.0 from build 1: CUDA 13.0 on all three subdirs
        ("2.10", "2.10.0", "linux-64", ("cu129", "cu130")),
        ("2.10", "2.10.0", "win-64", ("cu128", "cu130")),
        ("2.13", "2.13.0", "osx-arm64", ()),
    ],
)
def test_conda_forge_variants_per_patch(line, patch, subdir, variants):
    assert forge(line).variants_for(patch, subdir) == variants


def test_conda_forge_patches():
    assert forge("2.4").patches == ("2.4.0", "2.4.1")
    # 2.9.0 never reached a publishing branch of the feedstock: only 2.9.1
    assert forge("2.9").patches == ("2.9.1",)
    assert not forge("2.4").has("2.4.1", "win-64")
    assert forge("2.5").has("2.5.1", "win-64")
    assert forge("2.5").has("2.5.1", "osx-arm64")


@pytest.mark.parametrize(
    ("line", "patch", "subdir", "variant", "builds"),
    [
        ("2.7", "2.7.1", "linux-64", "cu126", (0, 0)),
        ("2.7", "2.7.1", "linux-64", "cu129", (1, 4)),
        ("2.7", "2.7.1", "win-64", "cu128", (1, 4)),
        ("2.10", "2.10.0", "linux-aarch64", "cu130", (3, 5)),
        ("2.5", "2.5.1", "linux-64", "cu118", (1, 3)),
    ],
)
def test_conda_forge_build_numbers(line, patch, subdir, variant, builds):
    group = forge(line).newest_group(patch, subdir, variant)
    assert (group.first, group.last) == builds


@pytest.mark.parametrize(
    ("line", "patch", "arch"),
    [
        ("2.10", "2.10.0", "8.7;10.1+PTX"),
        ("2.11", "2.11.0", "8.7+PTX"),
        ("2.12", "2.12.1", "8.7+PTX"),
        ("2.13", "2.13.0", "8.7+PTX"),
        ("2.9", "2.9.1", None),
    ],
)
def test_jetson_tegra_builds(line, patch, arch):
    tegra = forge(line).tegra_for(patch)
    if arch is None:
        assert tegra == {}
    else:
        assert list(tegra) == ["cu129"]
        assert str(tegra["cu129"]) == arch


@pytest.mark.parametrize(
    ("cuda", "arch"),
    [
        ("11.8", "3.5;5.0;6.0;6.1;7.0;7.5;8.0;8.6;8.9+PTX"),
        ("12.0", "5.0;6.0;6.1;7.0;7.5;8.0;8.6;8.9;9.0+PTX"),
        ("12.6", "5.0;6.0;6.1;7.0;7.5;8.0;8.6;8.9;9.0+PTX"),
        ("12.9", "5.0;6.0;7.0;7.5;8.0;8.6;9.0;10.0;12.0+PTX"),
        ("13.0", "7.5;8.0;8.6;9.0;10.0;11.0;12.0+PTX"),
    ],
)
def test_conda_forge_arch_lists(cuda, arch):
    assert str(COMPAT.conda_forge.arch[cuda]) == arch


def test_conda_forge_aarch64_cuda_13_adds_orin_from_2_13_0_build_2():
    old = forge("2.12").newest_group("2.12.1", "linux-aarch64", "cu130")
    new = forge("2.13").newest_group("2.13.0", "linux-aarch64", "cu130")
    assert old.arch == {}
    assert cc("8.7") in new.arch[("linux-aarch64", "cu130")].sass


# ------------------------------------------------------------ arch lists: PTX where it is


@pytest.mark.parametrize(
    ("line", "variant"),
    [("1.13", "cu116"), ("1.13", "cu117"), ("2.0", "cu118"), ("2.3", "cu118"), ("2.5", "cu118")],
)
def test_pytorch_channel_embeds_sm37_ptx(line, variant):
    arch = COMPAT.releases[line].conda_pytorch.arch[variant]
    assert arch.ptx == cc("3.7")
    assert str(arch).startswith("3.7+PTX;5.0;6.0;6.1")
    # PTX on a non-last entry: an sm_90 GPU without SASS of its own JIT-compiles compute_37
    assert ArchList.parse("3.7+PTX;5.0;8.6").kernel_for(cc("9.0")) == "compute_37"


@pytest.mark.parametrize(
    ("line", "variant"),
    [("2.9", "cu130"), ("2.11", "cu130"), ("2.12", "cu132"), ("2.14", "cu130"), ("2.14", "cu132")],
)
def test_cuda_13_ptx_on_linux_builds_only(line, variant):
    release = COMPAT.releases[line]
    assert release.wheel_variants("linux-64")[variant].ptx == cc("12.0")
    windows = release.wheel_variants("win-64")[variant]
    assert windows.ptx is None
    assert windows.sass == release.variants[variant].sass


def test_future_gpu_gets_ptx_on_linux_not_on_windows():
    future = ("Future GPU", "13.0")
    linux = plan(host("595.71.05", "13.2", future), torch="2.13", installer="pip")
    assert linux.variant == "cu132" and "compute_120" in text(linux)
    windows = plan(host("595.71", "13.2", future, platform="win-64"), torch="2.13", installer="pip")
    assert windows.refused
    assert "no kernels for GPU 0 Future GPU (sm_130)" in text(windows)


# ------------------------------------------------------------ companions, Python, GPUs, mirrors


@pytest.mark.parametrize("patch", ["2.12.0", "2.12.1", "2.13.0", "2.14.0", "2.14.1", "2.15.0"])
def test_torchaudio_2_11_is_the_companion_from_2_12(patch):
    _, release = COMPAT.find_release(patch)
    assert release.torchaudio == "2.11.0"


def test_torchaudio_2_11_is_pinned_with_the_variant_label():
    p = plan(host("595.71.05", "13.2", ("NVIDIA H100", "9.0")), torch="2.13", installer="pip")
    assert [pin.spec for pin in p.packages][-1] == "torchaudio==2.11.0+cu132"


def test_python_of_1_13():
    release = COMPAT.releases["1.13"]
    assert release.python_max == "3.10"
    assert release.supports_python("3.11", "linux-64", "pip")
    assert not release.supports_python("3.11", "win-64", "pip")
    assert not release.supports_python("3.11", "linux-64", "conda")
    p = plan(host("530.30.02", "12.1", ("A100", "8.0")), torch="1.13.1", installer="pip")
    assert p.python == "3.10"
    p311 = plan(
        host("530.30.02", "12.1", ("A100", "8.0")), torch="1.13.1", installer="pip", python="3.11"
    )
    assert not p311.refused
    assert any("Python 3.11 wheels for linux-64" in w for w in p311.warnings)
    conda = plan(host("530.30.02", "12.1", ("A100", "8.0")), torch="1.13.1", python="3.11")
    assert conda.refused and "3.7 to 3.10, not 3.11" in text(conda)


@pytest.mark.parametrize(
    ("name", "capability"),
    [
        ("NVIDIA GB10", "12.1"),
        ("NVIDIA Thor", "11.0"),
        ("Jetson T5000", "11.0"),
        ("Jetson T4000", "11.0"),
        ("Orin (nvgpu)", "8.7"),
        ("Jetson AGX Orin", "8.7"),
        ("Jetson AGX Xavier", "7.2"),
        ("Jetson TX2", "6.2"),
        ("Jetson Nano", "5.3"),
        ("NVIDIA RTX PRO 2000 Blackwell", "12.0"),
        ("NVIDIA RTX PRO 4000 Blackwell SFF Edition", "12.0"),
        ("NVIDIA RTX PRO 4500 Blackwell Server Edition", "12.0"),
        ("NVIDIA RTX A3000 Laptop GPU", "8.6"),
    ],
)
def test_new_gpus(name, capability):
    assert gpu_catalog().capability_for_name(name) == cc(capability)


def test_nju_uses_one_host():
    nju = CATALOG["nju"]
    assert nju.pypi == "https://mirrors.nju.edu.cn/pypi/web/simple"
    assert nju.pytorch_wheels.url("cu126").startswith("https://mirrors.nju.edu.cn/")


# ------------------------------------------------------------ what the corrections change


def test_windows_conda_2_4_1_comes_from_the_pytorch_channel():
    # conda-forge has no win-64 build of 2.4.x
    p = plan(
        host("560.94", "12.6", ("NVIDIA GeForce RTX 3060", "8.6"), platform="win-64"),
        torch="2.4.1",
        python="3.12",
    )
    assert p.channels[0] == "pytorch"
    assert "conda-forge has no pytorch 2.4.1 for win-64" in text(p)


def test_conda_2_9_0_is_not_on_conda_forge():
    p = plan(host("575.51.03", "12.9", ("NVIDIA H100", "9.0")), torch="2.9.0")
    assert p.refused and "--installer pip" in text(p)
    assert plan(host("575.51.03", "12.9", ("NVIDIA H100", "9.0")), torch="2.9.1").variant == "cu129"


def test_jetson_orin_gets_the_tegra_build_with_arm_variant():
    orin = ("Orin (nvgpu)", "8.7")
    p = plan(host("540.4.0", "12.6", orin, platform="linux-aarch64"), torch="2.12.1")
    assert p.variant == "cu129"
    specs = [pin.spec for pin in p.packages]
    assert "arm-variant=*=tegra" in specs
    assert "sm_87" in text(p)
    assert any("JetPack" in w for w in p.warnings)
    # before the feedstock built Jetson builds, CUDA 12 SBSA builds do not run on Orin
    old = plan(host("540.4.0", "12.6", orin, platform="linux-aarch64"), torch="2.9.1")
    assert old.variant == CPU or old.refused
    assert "no Jetson (tegra) twin" in text(old)


def test_sbsa_server_does_not_get_the_tegra_build():
    gh200 = ("NVIDIA GH200 120GB", "9.0")
    p = plan(host("575.51.03", "12.9", gh200, platform="linux-aarch64"), torch="2.12.1")
    assert p.variant == "cu129"
    assert "arm-variant=*=tegra" not in [pin.spec for pin in p.packages]
