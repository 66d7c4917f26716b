"""The compatibility data: its content where the reference pins it; errors name file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from labtorch.data.compat import (
    ArchList,
    cuda_of_variant,
    driver_key,
    load_compat,
    load_compat_files,
)
from labtorch.data.files import DATA_DIR, DataError
from labtorch.data.gpus import ComputeCapability

COMPAT = load_compat()
ALL_LINES = ["1.13", *(f"2.{minor}" for minor in range(16))]


def cc(text: str) -> ComputeCapability:
    return ComputeCapability.parse(text)


def test_every_release_from_1_13_to_2_15_is_present_in_order():
    assert list(COMPAT.releases) == ALL_LINES


@pytest.mark.parametrize(
    ("line", "variants", "pypi_default"),
    [
        ("1.13", ["cu116", "cu117"], "cu117"),
        ("2.0", ["cu117", "cu118"], "cu117"),
        ("2.3", ["cu118", "cu121"], "cu121"),
        ("2.5", ["cu118", "cu121", "cu124"], "cu124"),
        ("2.6", ["cu118", "cu124", "cu126"], "cu124"),
        ("2.7", ["cu118", "cu126", "cu128"], "cu126"),
        ("2.8", ["cu126", "cu128", "cu129"], "cu128"),
        ("2.10", ["cu126", "cu128", "cu130"], "cu128"),
        ("2.11", ["cu126", "cu128", "cu130"], "cu130"),
        ("2.12", ["cu126", "cu130", "cu132"], "cu130"),
        ("2.14", ["cu126", "cu130", "cu132"], "cu130"),
        ("2.15", ["cu130", "cu132"], "cu132"),
    ],
)
def test_variants_and_pypi_default(line, variants, pypi_default):
    release = COMPAT.releases[line]
    assert list(release.variants) == variants
    assert release.pypi_default == pypi_default


@pytest.mark.parametrize(
    ("line", "python_min", "python_max", "glibc", "mac_arm64"),
    [
        ("1.13", "3.7", "3.10", "2.17", "11.0"),  # RELEASE.md; cp311 wheels: linux-64 only
        ("2.5", "3.9", "3.13", "2.17", "11.0"),
        ("2.7", "3.9", "3.13", "2.28", "11.0"),
        ("2.9", "3.10", "3.14", "2.28", "11.0"),
        ("2.12", "3.10", "3.14", "2.28", "14.0"),
        ("2.15", "3.11", "3.15", "2.28", "14.0"),
    ],
)
def test_python_glibc_macos(line, python_min, python_max, glibc, mac_arm64):
    release = COMPAT.releases[line]
    assert (release.python_min, release.python_max) == (python_min, python_max)
    assert release.glibc["x86_64"] == glibc
    assert release.macos["arm64"] == mac_arm64


def test_intel_mac_ends_with_2_2():
    assert COMPAT.releases["2.2"].macos["x86_64"] == "10.9"
    assert all(COMPAT.releases[line].macos.get("x86_64") is None for line in ALL_LINES[4:])


@pytest.mark.parametrize(
    ("line", "variant", "has", "lacks", "ptx"),
    [
        ("2.7", "cu128", ["7.5", "12.0"], ["6.0", "7.0"], "12.0"),
        ("2.8", "cu128", ["7.0", "12.0"], ["6.0"], None),
        ("2.10", "cu128", ["7.0"], ["6.0"], None),
        ("2.11", "cu128", ["7.5"], ["7.0"], None),
        ("2.14", "cu126", ["5.0", "6.0", "7.0", "9.0"], ["10.0"], None),
        ("2.9", "cu130", ["7.5", "10.0"], ["7.0"], "12.0"),
        ("2.0", "cu118", ["3.7", "9.0"], [], None),
    ],
)
def test_arch_lists(line, variant, has, lacks, ptx):
    arch = COMPAT.releases[line].variants[variant]
    assert all(cc(x) in arch.sass for x in has)
    assert not any(cc(x) in arch.sass for x in lacks)
    assert arch.ptx == (cc(ptx) if ptx else None)


@pytest.mark.parametrize(
    ("arch", "gpu", "kernel"),
    [
        ("5.0;6.0;7.0;7.5;8.0;8.6;9.0", "6.1", "sm_60"),  # Pascal consumer on sm_60 SASS
        ("5.0;6.0;7.0;7.5;8.0;8.6;9.0", "8.9", "sm_86"),  # Ada on Ampere SASS
        ("5.0;6.0;7.0;7.5;8.0;8.6;9.0", "12.0", None),  # no PTX: nothing for Blackwell
        ("7.5;8.0;8.6;9.0;10.0;12.0+PTX", "12.0", "sm_120"),
        ("7.5;8.0;8.6;9.0;10.0;12.0+PTX", "12.1", "sm_120"),
        ("7.5;8.0;8.6;9.0;10.0;12.0+PTX", "6.1", None),  # PTX never runs on older GPUs
        ("7.5;8.0;8.6;9.0;10.0;12.0+PTX", "13.0", "compute_120"),  # PTX JIT on a newer GPU
        ("8.0;8.6+PTX", "9.0", "compute_86"),
        ("8.6", "8.0", None),  # SASS for 8.6 does not run on 8.0
        ("7.0", "7.5", "sm_70"),
        ("9.0", "10.0", None),  # never across majors
    ],
)
def test_kernel_for(arch, gpu, kernel):
    assert ArchList.parse(arch).kernel_for(cc(gpu)) == kernel


def test_arch_list_round_trips():
    text = "7.5;8.0;8.6;9.0;10.0;12.0+PTX"
    assert str(ArchList.parse(text)) == text


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("", "empty arch list"),
        ("8.0;9.0+SASS", "unknown arch suffix in '9.0+SASS'"),
        ("sm_x", "not a compute capability: 'sm_x'"),
        ("3.7+PTX;5.0;9.0+PTX", "more than one +PTX entry in '3.7+PTX;5.0;9.0+PTX'"),
    ],
)
def test_arch_list_rejects(bad, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ArchList.parse(bad)


@pytest.mark.parametrize(
    ("variant", "cuda"),
    [("cu116", "11.6"), ("cu118", "11.8"), ("cu121", "12.1"), ("cu130", "13.0"), ("cpu", None)],
)
def test_cuda_of_variant(variant, cuda):
    assert cuda_of_variant(variant) == cuda


@pytest.mark.parametrize("bad", ["cuda121", "rocm6.0", "cu", "121"])
def test_cuda_of_variant_rejects(bad):
    message = f"not a PyTorch variant: '{bad}' (expected cpu or cuXYZ, e.g. cu121)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        cuda_of_variant(bad)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("570.86.10", "570.124.06"),
        ("580", "580.65.06"),
        ("525.60.13", "530.30.02"),
        ("595.80", "595.80.1"),
    ],
)
def test_driver_order(low, high):
    assert driver_key(low) < driver_key(high)


@pytest.mark.parametrize(
    ("cuda", "minor_linux", "full_linux"),
    [
        ("11.8", "450.80.02", "520.61.05"),
        ("12.1", "525.60.13", "530.30.02"),
        ("12.8", "525.60.13", "570.26"),
        ("13.0", "580", "580.65.06"),
        ("13.2", "580", "595.45.04"),
    ],
)
def test_driver_floors(cuda, minor_linux, full_linux):
    floor = COMPAT.cuda[cuda]
    assert floor.minor_compat["linux"] == minor_linux
    assert floor.full["linux"] == full_linux


def test_every_variant_has_driver_data():
    for release in COMPAT.releases.values():
        for variant in [*release.variants, *release.aarch64_variants]:
            assert cuda_of_variant(variant) in COMPAT.cuda


@pytest.mark.parametrize(
    ("requested", "patch"),
    [
        ("2.3", "2.3.1"),
        ("2.3.0", "2.3.0"),
        ("2.9", "2.9.1"),
        ("1.13.1", "1.13.1"),
        ("2.15", "2.15.0"),
    ],
)
def test_find_release(requested, patch):
    assert COMPAT.find_release(requested)[1].version == patch


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        ("2.16", "unknown torch release 2.16"),
        ("2.3.9", "the 2.3 line has 2.3.0, 2.3.1"),
        ("2.3.1+cu121", "without a label"),
        ("latest", "not a torch version"),
    ],
)
def test_find_release_errors(requested, message):
    with pytest.raises(KeyError, match=message.replace("+", r"\+")):
        COMPAT.find_release(requested)


def test_unconfirmed_markers_stay_marked():
    assert COMPAT.releases["2.15"].is_unconfirmed("variants.cu130")
    assert COMPAT.releases["2.6"].is_unconfirmed("variants.cu126")
    assert not COMPAT.releases["2.6"].is_unconfirmed("variants.cu124")
    assert COMPAT.releases["2.12"].is_unconfirmed("patches.2.12.0.torchvision")
    assert COMPAT.releases["2.14"].is_unconfirmed("patches.2.14.1")
    assert not COMPAT.releases["2.14"].is_unconfirmed("patches.2.14.0")
    assert COMPAT.releases["2.15"].is_unconfirmed("patches.2.15.0.torchaudio")
    assert COMPAT.releases["2.15"].is_unconfirmed("python")
    # NVIDIA Table 3, CUDA 12.0 GA: 525.60.13 / 527.41 (issue 12).
    assert COMPAT.cuda["12.0"].unconfirmed == frozenset()
    assert COMPAT.cuda["12.0"].full == {"linux": "525.60.13", "windows": "527.41"}


def test_conda_channels():
    assert COMPAT.conda_pytorch_channel.last_release == "2.5.1"
    assert COMPAT.conda_pytorch_channel.pytorch_cuda == ("11.6", "11.7", "11.8", "12.1", "12.4")
    assert COMPAT.releases["2.6"].conda_pytorch is None
    assert COMPAT.releases["2.13"].conda_forge.variants["linux-64"] == ("cu129", "cu130")
    assert COMPAT.releases["2.14"].conda_forge is None
    # the union over every build: 2.7.1's CUDA 12.9 builds came later than 2.7.0's 12.6 ones
    assert COMPAT.releases["2.7"].conda_forge.variants["linux-64"] == ("cu126", "cu129")


# -------------------------------------------------------------- broken data names file and key


def _write_broken(tmp_path: Path, edit) -> tuple[Path, Path]:
    releases = yaml.safe_load((DATA_DIR / "releases.yaml").read_text())
    cuda = yaml.safe_load((DATA_DIR / "cuda.yaml").read_text())
    edit(releases, cuda)
    releases_file = tmp_path / "releases.yaml"
    cuda_file = tmp_path / "cuda.yaml"
    releases_file.write_text(yaml.safe_dump(releases, sort_keys=False))
    cuda_file.write_text(yaml.safe_dump(cuda, sort_keys=False))
    return releases_file, cuda_file


def _set(path: list, value):
    def edit(releases, cuda):
        target = releases if path[0] == "releases" or path[0].startswith("conda") else cuda
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _delete(path: list):
    def edit(releases, _cuda):
        target = releases
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return edit


@pytest.mark.parametrize(
    ("edit", "file", "key", "problem"),
    [
        (
            _set(["releases", "2.3", "variants", "cu999"], "8.0"),
            "releases.yaml",
            "releases.2.3.variants.cu999",
            "CUDA 99.9 has no driver data",
        ),
        (
            _set(["releases", "2.3", "pypi_default"], "cu124"),
            "releases.yaml",
            "releases.2.3.pypi_default",
            "not among the variants",
        ),
        (
            _set(["releases", "2.3", "colour"], "blue"),
            "releases.yaml",
            "releases.2.3",
            "unknown key(s) colour",
        ),
        (
            _delete(["releases", "2.3", "python"]),
            "releases.yaml",
            "releases.2.3",
            "missing key(s) python",
        ),
        (
            _set(["releases", "2.3", "python"], {"min": "3.12", "max": "3.8"}),
            "releases.yaml",
            "releases.2.3.python",
            "min 3.12 is above max 3.8",
        ),
        (
            _set(["releases", "2.3", "python"], {"min": "three", "max": "3.8"}),
            "releases.yaml",
            "releases.2.3.python.min",
            "expected a Python version",
        ),
        (
            _set(["releases", "2.3", "variants", "cu121"], "8.0;9.0+SASS"),
            "releases.yaml",
            "releases.2.3.variants.cu121",
            "unknown arch suffix",
        ),
        (
            _set(["releases", "2.3", "unconfirmed"], ["variants.cu124"]),
            "releases.yaml",
            "releases.2.3",
            "unconfirmed marker 'variants.cu124' points nowhere",
        ),
        (
            _set(
                ["releases", "2.3", "patches", "2.4.0"],
                {"torchvision": "0.19.0", "torchaudio": "2.4.0"},
            ),
            "releases.yaml",
            "releases.2.3.patches.2.4.0",
            "must look like 2.3.N",
        ),
        (
            _set(["releases", "2.5", "conda_forge", "2.5.7"], {"0": {"linux-64": ["cpu"]}}),
            "releases.yaml",
            "releases.2.5.conda_forge.2.5.7",
            "2.5.7 is not a patch release",
        ),
        (
            _set(["releases", "2.7", "conda_forge", "2.7.1", "2-3"], {"linux-64": ["cu129"]}),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1",
            "overlap",
        ),
        (
            _set(["releases", "2.7", "conda_forge", "2.7.1", "5"], {"osx-arm64": ["cu129"]}),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1.5.osx-arm64",
            "macOS builds are cpu only",
        ),
        (
            _set(["releases", "2.7", "conda_forge", "2.7.1", "5"], {"linux-64": ["cu999"]}),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1.5.linux-64",
            "CUDA 99.9 has no driver data",
        ),
        (
            _set(["releases", "2.7", "conda_forge", "2.7.1", "5-2"], {"linux-64": ["cpu"]}),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1.5-2",
            "runs backwards",
        ),
        (
            _set(["releases", "2.3", "variants", "cu121"], "5.0+PTX;8.0+PTX"),
            "releases.yaml",
            "releases.2.3.variants.cu121",
            "more than one +PTX entry",
        ),
        (
            _set(["releases", "2.3", "windows"], {"variants": {"cu124": "8.0"}}),
            "releases.yaml",
            "releases.2.3.windows.variants.cu124",
            "not among the variants",
        ),
        (
            _set(["releases", "1.13", "python", "pip_max"], {"linux-64": "3.9"}),
            "releases.yaml",
            "releases.1.13.python.pip_max.linux-64",
            "not above max 3.10",
        ),
        (
            _set(["cuda", "12.1", "full", "linux"], "five-thirty"),
            "cuda.yaml",
            "cuda.12.1.full.linux",
            "expected a driver version",
        ),
        (
            _set(["cuda", "12.1", "full"], {"linux": "530.30.02"}),
            "cuda.yaml",
            "cuda.12.1.full",
            "missing key(s) windows",
        ),
        (
            _set(["releases", "2.3", "released"], 2024),
            "releases.yaml",
            "releases.2.3.released",
            "expected a string",
        ),
    ],
)
def test_broken_data_names_file_and_key(tmp_path, edit, file, key, problem):
    releases_file, cuda_file = _write_broken(tmp_path, edit)
    with pytest.raises(DataError) as caught:
        load_compat_files(releases_file, cuda_file)
    error = caught.value
    assert Path(error.file).name == file
    assert error.key == key
    assert problem in error.problem
    assert str(error).startswith(f"{error.file}: {key}: ")


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(DataError, match="cannot read the file"):
        load_compat_files(tmp_path / "missing.yaml", DATA_DIR / "cuda.yaml")
    bad = tmp_path / "releases.yaml"
    bad.write_text("releases: [unclosed\n")
    with pytest.raises(DataError, match="not valid YAML") as caught:
        load_compat_files(bad, DATA_DIR / "cuda.yaml")
    assert caught.value.file == str(bad)
