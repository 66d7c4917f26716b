"""The probe script's functions called in this process, against a torch stand-in object and env
directories written out by the test: what it records of torch (CUDA, cuDNN, arch list, warnings,
each device and a matmul on it) when every call works and when each one fails, and where each
package came from. ``test_probe_script.py`` runs the whole script in a real env's python; these
reach what that env, with no torch, cannot."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from labtorch.facts import probe_script


class Tensor:
    """Enough of a tensor for the probe's matmul: ``ones(2, 2) @ ones(2, 2)`` sums to 8."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __matmul__(self, other: Tensor) -> Tensor:
        return Tensor(self.value * other.value * 2)

    def sum(self) -> Tensor:
        return Tensor(self.value * 4)

    def item(self) -> float:
        return self.value


def raises(exc: Exception):
    def call(*_args, **_kwargs):
        raise exc

    return call


def fake_torch(
    *,
    ones=lambda *shape, device: Tensor(1.0),
    cudnn=lambda: 90100,
    available=lambda: True,
    arch_list=lambda: ["sm_80", "sm_90"],
    devices=({"name": "NVIDIA H100 80GB HBM3", "capability": (9, 0)},),
    cuda="12.6",
):
    def capability(index):
        found = devices[index]["capability"]
        if isinstance(found, Exception):
            raise found
        return found

    return SimpleNamespace(
        __version__="2.9.1+cu126",
        ones=ones,
        version=SimpleNamespace(cuda=cuda),
        backends=SimpleNamespace(cudnn=SimpleNamespace(version=cudnn)),
        cuda=SimpleNamespace(
            is_available=available,
            get_arch_list=arch_list,
            device_count=lambda: len(devices),
            get_device_capability=capability,
            get_device_name=lambda index: devices[index]["name"],
        ),
    )


# ---- the matmul -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ones", "said"),
    [
        (lambda *shape, device: Tensor(1.0), "ok"),
        (lambda *shape, device: Tensor(0.5), "wrong result 2.0"),
        (
            raises(RuntimeError("CUDA error: no kernel image is available for execution")),
            "RuntimeError: CUDA error: no kernel image is available for execution",
        ),
    ],
)
def test_the_matmul_is_ok_a_wrong_result_or_the_error(ones, said) -> None:
    assert probe_script.matmul(fake_torch(ones=ones), "cuda:0") == said


# ---- what torch says of CUDA ------------------------------------------------------------------


def test_gpu_facts_when_every_call_works(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert probe_script.gpu_facts(fake_torch()) == {
        "cuda": "12.6",
        "cudnn": 90100,
        "available": True,
        "arch_list": ["sm_80", "sm_90"],
        "warnings": [],
        "visible_devices": "0",
        "devices": [
            {"index": 0, "name": "NVIDIA H100 80GB HBM3", "capability": "9.0", "matmul": "ok"}
        ],
    }


def test_a_cpu_build_has_no_cudnn_no_devices_and_none_visible(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    torch = fake_torch(
        cuda=None,
        cudnn=raises(RuntimeError("cuDNN not available")),
        available=lambda: False,
        arch_list=lambda: [],
    )
    assert probe_script.gpu_facts(torch) == {
        "cuda": None,
        "cudnn": None,
        "available": False,
        "arch_list": [],
        "warnings": [],
        "visible_devices": None,
        "devices": [],
    }


def test_the_warnings_torch_gives_while_asked_are_recorded_stripped() -> None:
    def available():
        warnings.warn(
            "\nNVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the "
            "current PyTorch installation.\n",
            UserWarning,
            stacklevel=1,
        )
        return True

    facts = probe_script.gpu_facts(fake_torch(available=available))
    assert facts["warnings"] == [
        "NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current "
        "PyTorch installation."
    ]


def test_cuda_that_fails_to_initialise_is_recorded_as_unavailable() -> None:
    torch = fake_torch(
        available=raises(RuntimeError("Found no NVIDIA driver on your system.")),
    )
    facts = probe_script.gpu_facts(torch)
    assert (facts["available"], facts["arch_list"], facts["devices"]) == (False, [], [])
    assert facts["error"] == "RuntimeError: Found no NVIDIA driver on your system."


def test_a_device_that_cannot_be_queried_is_recorded_and_the_others_probed() -> None:
    devices = (
        {"name": "NVIDIA A100-SXM4-40GB", "capability": RuntimeError("CUDA error: invalid device")},
        {"name": "NVIDIA A100-SXM4-40GB", "capability": (8, 0)},
    )
    assert probe_script.gpu_facts(fake_torch(devices=devices))["devices"] == [
        {
            "index": 0,
            "name": None,
            "capability": None,
            "matmul": "RuntimeError: CUDA error: invalid device",
        },
        {"index": 1, "name": "NVIDIA A100-SXM4-40GB", "capability": "8.0", "matmul": "ok"},
    ]


# ---- the torch family's versions --------------------------------------------------------------


def test_versions_of_the_family_and_the_import_error_of_a_companion(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(__version__="2.9.1+cu126"))
    # A module without __version__ is recorded as imported, version unknown.
    monkeypatch.setitem(sys.modules, "torchaudio", SimpleNamespace())
    # None in sys.modules makes the import fail, as a companion built for another torch does.
    monkeypatch.setitem(sys.modules, "torchvision", None)
    assert probe_script.versions() == {
        "torch": {"version": "2.9.1+cu126", "error": None},
        "torchvision": {
            "version": None,
            "error": "ModuleNotFoundError: import of torchvision halted; None in sys.modules",
        },
        "torchaudio": {"version": None, "error": None},
    }


# ---- where each package came from -------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_conda_origin_reads_the_record_of_that_name_only(tmp_path: Path) -> None:
    channel = "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge"
    # pytorch-cuda's record matches the file pattern of pytorch but is another package.
    _write(
        tmp_path / "conda-meta" / "pytorch-cuda-12.1-ha16c6d3_6.json",
        json.dumps({"name": "pytorch-cuda", "channel": "pytorch", "url": "https://other"}),
    )
    assert probe_script.conda_origin(str(tmp_path), "torch") is None
    url = f"{channel}/linux-64/pytorch-2.7.1-cuda126_generic_py312_h1_201.conda"
    _write(
        tmp_path / "conda-meta" / "pytorch-2.7.1-cuda126_generic_py312_h1_201.json",
        json.dumps({"name": "pytorch", "channel": channel, "url": url}),
    )
    assert probe_script.conda_origin(str(tmp_path), "torch") == {
        "installer": "conda",
        "channel": channel,
        "url": url,
    }
    assert probe_script.conda_origin(str(tmp_path), "torchvision") is None


WHEEL = "https://mirror.example/pytorch-wheels/cu126/torch-2.9.1%2Bcu126-cp311-linux_x86_64.whl"


@pytest.fixture
def site(tmp_path: Path, monkeypatch) -> Path:
    """A site-packages first on sys.path, where importlib.metadata finds distributions."""
    folder = tmp_path / "site-packages"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _dist(site: Path, name: str, direct_url: str | None = None) -> None:
    info = site / f"{name.replace('-', '_')}-2.9.1.dist-info"
    _write(info / "METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 2.9.1\n")
    if direct_url is not None:
        _write(info / "direct_url.json", json.dumps({"url": direct_url, "archive_info": {}}))


def _report(prefix: Path, *entries: tuple[str, str]) -> None:
    install = [{"metadata": {"name": n}, "download_info": {"url": u}} for n, u in entries]
    _write(prefix / probe_script.PIP_REPORT, json.dumps({"install": install}))


def test_pip_origin_of_a_distribution_not_installed_is_none(tmp_path: Path, site: Path) -> None:
    assert probe_script.pip_origin(str(tmp_path), "labtorch-no-such-distribution") is None


def test_pip_origin_prefers_direct_url_to_the_report(tmp_path: Path, site: Path) -> None:
    _dist(site, "labtorch-probe-a", direct_url=WHEEL)
    _report(tmp_path, ("labtorch-probe-a", "https://elsewhere/a.whl"))
    assert probe_script.pip_origin(str(tmp_path), "labtorch-probe-a") == {
        "installer": "pip",
        "channel": None,
        "url": WHEEL,
    }


@pytest.mark.parametrize(
    ("entries", "url"),
    [
        # The report's names are matched without regard to case.
        ((("Other", "https://x/other.whl"), ("LabTorch-Probe-B", WHEEL)), WHEEL),
        ((("other", "https://x/other.whl"),), None),
        (None, None),
    ],
)
def test_pip_origin_from_the_install_report(tmp_path: Path, site: Path, entries, url) -> None:
    _dist(site, "labtorch-probe-b")
    if entries is not None:
        _report(tmp_path, *entries)
    assert probe_script.pip_origin(str(tmp_path), "labtorch-probe-b") == {
        "installer": "pip",
        "channel": None,
        "url": url,
    }


def test_listing_names_conda_records_and_dist_info_directories(tmp_path: Path) -> None:
    _write(tmp_path / "conda-meta" / "python-3.12.8-h_0.json", "{}")
    _write(tmp_path / "conda-meta" / "history", "")
    _write(tmp_path / "lib" / "python3.12" / "site-packages" / "torch-2.9.1.dist-info" / "x", "")
    _write(tmp_path / "lib" / "python3.12" / "site-packages" / "torch" / "__init__.py", "")
    assert probe_script.listing(str(tmp_path)) == [
        "python-3.12.8-h_0.json",
        "torch-2.9.1.dist-info",
    ]


# ---- the whole probe --------------------------------------------------------------------------


def _main(monkeypatch, capsys, prefix: Path, argv: list[str], torch) -> dict:
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sys, "argv", ["-", *argv])
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torchvision", SimpleNamespace(__version__="0.24.1"))
    monkeypatch.setitem(sys.modules, "torchaudio", SimpleNamespace(__version__="2.9.1"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    probe_script.main()
    out = capsys.readouterr().out
    assert out.startswith(probe_script.MARK) and out.endswith("\n")
    return json.loads(out[len(probe_script.MARK) :])


def test_main_with_torch_records_its_gpu_and_a_cpu_matmul(tmp_path, monkeypatch, capsys) -> None:
    result = _main(monkeypatch, capsys, tmp_path, [], fake_torch())
    assert result["packages"]["torch"] == {"version": "2.9.1+cu126", "error": None}
    assert result["gpu"]["devices"][0]["capability"] == "9.0"
    assert result["cpu_matmul"] == "ok"
    assert "kernel_driver" not in result
    assert not (tmp_path / probe_script.CACHE).exists()


@pytest.mark.parametrize(
    ("argv", "kernel_driver"),
    [(["--keep", "580.95.05"], "580.95.05"), (["--keep", ""], None), (["--keep"], None)],
)
def test_main_keep_writes_what_it_prints_with_the_driver_given(
    tmp_path, monkeypatch, capsys, argv, kernel_driver
) -> None:
    result = _main(monkeypatch, capsys, tmp_path, argv, fake_torch())
    assert result["kernel_driver"] == kernel_driver
    assert json.loads((tmp_path / probe_script.CACHE).read_text()) == result


def test_main_without_torch_probes_no_gpu(tmp_path, monkeypatch, capsys) -> None:
    result = _main(monkeypatch, capsys, tmp_path, [], None)
    assert result["packages"]["torch"] == {
        "version": None,
        "error": "ModuleNotFoundError: import of torch halted; None in sys.modules",
    }
    assert "gpu" not in result and "cpu_matmul" not in result
