"""The GPU catalog: product names as nvidia-smi prints them -> compute capability."""

from __future__ import annotations

from pathlib import Path

import pytest

from labtorch.data.files import DataError
from labtorch.data.gpu_catalog import (
    capability_for_name,
    gpu_catalog,
    load_gpu_catalog,
    normalise_gpu_name,
)
from labtorch.data.gpus import ComputeCapability

# Every name the fixtures show, then common lab GPUs in the spellings of different driver eras.
KNOWN = [
    ("GRID K520", "3.0"),
    ("Tesla K80", "3.7"),
    ("GeForce GT 730", "3.5"),
    ("GeForce GTX 1050", "6.1"),
    ("GeForce GTX 1050 Ti", "6.1"),
    ("GeForce GTX 1070 Ti", "6.1"),
    ("GeForce GTX 108...", "6.1"),
    ("NVIDIA GeForce GTX 1080 Ti", "6.1"),
    ("NVIDIA GeForce GT 1030", "6.1"),
    ("Quadro P400", "6.1"),
    ("Quadro P2000", "6.1"),
    ("Quadro P2200", "6.1"),
    ("Tesla P100-PCIE-16GB", "6.0"),
    ("Tesla P40", "6.1"),
    ("GRID P4-1Q", "6.1"),
    ("NVIDIA TITAN V", "7.0"),
    ("Tesla V100S-PCIE-32GB", "7.0"),
    ("Tesla T4", "7.5"),
    ("NVIDIA GeForce GTX 1650", "7.5"),
    ("GeForce RTX 2080 Ti", "7.5"),
    ("NVIDIA GeForce RTX 2070", "7.5"),
    ("NVIDIA GeForce RTX 2080", "7.5"),
    ("NVIDIA GeForce RTX 2080 SUPER", "7.5"),
    ("NVIDIA GeForce RTX 2080 ...", "7.5"),
    ("A100-SXM4-40GB", "8.0"),
    ("NVIDIA A100-SXM4-40GB", "8.0"),
    ("NVIDIA A100-SXM4-80GB", "8.0"),
    ("NVIDIA A10G", "8.6"),
    ("NVIDIA A40", "8.6"),
    ("NVIDIA RTX A5000", "8.6"),
    ("NVIDIA GeForce RTX 3060", "8.6"),
    ("NVIDIA GeForce RTX 3060 Laptop GPU", "8.6"),
    ("NVIDIA GeForce RTX 3070", "8.6"),
    ("NVIDIA GeForce RTX 3080", "8.6"),
    ("NVIDIA GeForce RTX 3090", "8.6"),
    ("NVIDIA GeForce RTX 4090", "8.9"),
    ("NVIDIA GeForce RTX 4080 ...", "8.9"),
    ("NVIDIA GeForce RTX 4080 SUPER", "8.9"),
    ("NVIDIA L40S", "8.9"),
    ("NVIDIA RTX 4000 SFF Ada Generation", "8.9"),
    ("NVIDIA H100 80GB HBM3", "9.0"),
    ("NVIDIA H100 NVL", "9.0"),
    ("NVIDIA H200", "9.0"),
    ("NVIDIA GH200 120GB", "9.0"),
    ("NVIDIA GeForce RTX 5060", "12.0"),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "12.0"),
    # Other spellings and suffixes.
    ("GeForce GTX 1080 Ti", "6.1"),
    ("  nvidia   geforce gtx 1080 ti ", "6.1"),
    ("Tesla V100-SXM2-16GB", "7.0"),
    ("Tesla V100-SXM2-32GB-LS", "7.0"),
    ("NVIDIA A100 80GB PCIe", "8.0"),
    ("NVIDIA A100-PCIE-40GB", "8.0"),
    ("NVIDIA H100 PCIe", "9.0"),
    ("NVIDIA H200 NVL", "9.0"),
    ("NVIDIA B200", "10.0"),
    ("NVIDIA GeForce GTX 1060 6GB", "6.1"),
    ("GeForce GTX 1070 with Max-Q Design", "6.1"),
    ("NVIDIA GeForce RTX 4070 Ti SUPER", "8.9"),
    ("Quadro RTX 6000", "7.5"),
    ("NVIDIA RTX A6000", "8.6"),
    ("NVIDIA RTX 6000 Ada Generation", "8.9"),
    ("NVIDIA GeForce RTX 5090", "12.0"),
    ("NVIDIA A40-48Q", "8.6"),
    # Truncated names that can only be one capability.
    ("Tesla V100-SXM2...", "7.0"),
    ("Tesla P100-PCIE...", "6.0"),
    ("NVIDIA RTX 6000 Ada Gene...", "8.9"),
    ("NVIDIA RTX PRO 6000 Blac...", "12.0"),
]

UNKNOWN = [
    "Graphics Device",
    "NVIDIA GeForce ...",
    "GeForce ...",
    "ERR!",
    "",
    "...",
    "GeForce GTX TITAN...",  # Kepler TITANs are 3.5, the Maxwell TITAN X is 5.2
    "NVIDIA RTX 6000 ...",  # Quadro RTX 6000 (7.5) or RTX 6000 Ada (8.9)
    "NVIDIA GeForce RTX 3050 A Laptop GPU",  # an Ada chip under an Ampere name: not listed
    "NVIDIA GeForce RTX 9090",
]


@pytest.mark.parametrize(("name", "capability"), KNOWN)
def test_known_names(name: str, capability: str) -> None:
    assert capability_for_name(name) == ComputeCapability.parse(capability)


@pytest.mark.parametrize("name", UNKNOWN)
def test_unresolvable_names(name: str) -> None:
    assert capability_for_name(name) is None


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("NVIDIA GeForce GTX 1080 Ti", "GTX 1080 TI"),
        ("Tesla V100S-PCIE-32GB", "V100S"),
        ("A100-SXM4-80GB", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA GeForce RTX 3060 Laptop GPU", "RTX 3060"),
        ("GRID P4-1Q", "P4"),
        ("GRID K520", "K520"),
        ("NVIDIA RTX 4000 SFF Ada Generation", "RTX 4000 SFF ADA GENERATION"),
    ],
)
def test_normalise(name: str, normalised: str) -> None:
    assert normalise_gpu_name(name) == normalised


def test_packaged_catalog_names_its_source() -> None:
    assert "developer.nvidia.com/cuda-gpus" in gpu_catalog().source


def test_catalog_is_loaded_once() -> None:
    assert gpu_catalog() is gpu_catalog()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpus.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_explicit_path(tmp_path: Path) -> None:
    catalog = load_gpu_catalog(
        _write(tmp_path, 'source: test\ncapabilities:\n  "8.6": [GeForce RTX 3090]\n')
    )
    assert catalog.capability_for_name("NVIDIA GeForce RTX 3090") == ComputeCapability(8, 6)
    assert catalog.capability_for_name("NVIDIA GeForce RTX 4090") is None


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('source: s\ncapabilities:\n  "86": [A40]\n', "capabilities.86", "N.M"),
        ('source: s\ncapabilities:\n  "8.6x": [A40]\n', "capabilities.8.6x", "N.M"),
        ("source: s\ncapabilities:\n  8.6: [A40]\n", "capabilities", "string"),
        ('source: s\ncapabilities:\n  "8.6": A40\n', "capabilities.8.6", "list"),
        ('source: s\ncapabilities:\n  "8.6": [A40, 7]\n', "capabilities.8.6.1", "string"),
        ('source: s\ncapabilities:\n  "8.6": [NVIDIA]\n', "capabilities.8.6.0", "product name"),
        (
            'source: s\ncapabilities:\n  "8.6": [A40]\n  "8.9": [NVIDIA A40]\n',
            "capabilities.8.9.0",
            "twice",
        ),
        ('capabilities:\n  "8.6": [A40]\n', "", "source"),
        ('source: ""\ncapabilities: {}\n', "source", "must name"),
        ("source: s\ncapabilities: {}\nextra: 1\n", "", "extra"),
    ],
)
def test_malformed_catalog(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(DataError) as error:
        load_gpu_catalog(path)
    assert error.value.file == str(path)
    assert error.value.key == key
    assert problem in error.value.problem


def test_unreadable_yaml(tmp_path: Path) -> None:
    path = _write(tmp_path, "source: [unclosed\n")
    with pytest.raises(DataError, match="not valid YAML") as error:
        load_gpu_catalog(path)
    assert error.value.file == str(path)
