"""The stand-in torch answers probes by real torch's rules, as built, packaged and installed.

Rule tables run the stand-in's files (as the mirror ships them) in a subprocess against a
simulated ``host.json``; the install tests take packages from a running mirror, with py-rattler
into a conda prefix and with pip into a venv, and run them on the host's Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labtorch.data.compat import ArchList, load_compat
from labtorch_sim.mirror import start_mirror, stop_mirror
from labtorch_sim.mirror_content import build_mirror_content, torch_build
from labtorch_sim.standin_torch import PACKAGES, SOURCE_DIR, TorchBuild, payload

HOST_PYTHON = Path("/usr/bin/python3.11")
needs_host_python = pytest.mark.skipif(
    not HOST_PYTHON.exists(), reason="the simulated hosts' /usr/bin/python3.11 is not here"
)
NO_KERNEL = "RuntimeError: CUDA error: no kernel image is available for execution on the device"
UNSUPPORTED_PTX = (
    "RuntimeError: CUDA error: the provided PTX was compiled with an unsupported toolc"
)

# What a probe asks: every answer, each GPU's matmul (or the error it raised), the warnings.
PROBE = r"""
import json, sys, warnings
warnings.simplefilter("always")

def attempt(call):
    try:
        return call()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

def matmul(where):
    product = torch.ones(2, 2, device=where) @ torch.ones(2, 2, device=where)
    assert str(product.device) == where and str(product.cpu().device) == "cpu", product.device
    return product.sum().item()

with warnings.catch_warnings(record=True) as caught:
    import torch
    count = torch.cuda.device_count()
    result = {
        "prefix": sys.prefix,
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cudnn_available": torch.backends.cudnn.is_available(),
        "available": torch.cuda.is_available(),
        "count": count,
        "arch": torch.cuda.get_arch_list(),
        "names": attempt(lambda: [torch.cuda.get_device_name(i) for i in range(count)]),
        "capability": attempt(lambda: torch.cuda.get_device_capability(0)),
        "cpu": matmul("cpu"),
        "gpu": [attempt(lambda i=i: matmul(f"cuda:{i}")) for i in range(max(count, 1))],
    }
result["warnings"] = [str(w.message) for w in caught]
print(json.dumps(result))
"""


def gpu(name: str, capability: str, index: int = 0) -> dict:
    return {
        "index": index,
        "name": name,
        "capability": capability,
        "memory_mib": 24576,
        "uuid": f"GPU-sim-{index}",
        "mig": False,
    }


# A real driver of each CUDA version the hosts below report (nvidia-smi's header).
DRIVERS = {
    "11.4": "470.256.02",
    "12.2": "535.171.04",
    "12.4": "550.54.14",
    "12.8": "570.86.15",
    "12.9": "575.57.08",
}


def host(cuda: str | None, *gpus: dict, loaded: bool = True, kernel: str | None = None) -> dict:
    driver = DRIVERS[cuda or "12.8"] if loaded else None
    return {
        "name": "lab01",
        "profile": "test",
        "driver_loaded": loaded,
        "driver": driver,
        "kernel_driver": kernel or driver,
        "cuda": cuda,
        "gpus": list(gpus),
    }


GTX_1080_TI = gpu("NVIDIA GeForce GTX 1080 Ti", "6.1")
RTX_3090 = gpu("NVIDIA GeForce RTX 3090", "8.6")
RTX_5090 = gpu("NVIDIA GeForce RTX 5090", "12.0")
H100 = gpu("NVIDIA H100 80GB HBM3", "9.0")

HOSTS: dict[str, dict | None] = {
    "none": None,
    "ampere-12.4": host("12.4", RTX_3090),
    "ampere-12.2": host("12.2", RTX_3090),
    "ampere-11.4": host("11.4", RTX_3090),
    "hopper-12.2": host("12.2", H100),
    "blackwell-12.9": host("12.9", RTX_5090),
    "blackwell-12.8": host("12.8", RTX_5090),
    "pascal-12.8": host("12.8", GTX_1080_TI),
    "hopper-12.8": host("12.8", H100),
    "mixed-12.8": host("12.8", GTX_1080_TI, {**RTX_3090, "index": 1}),
    "nvml-mismatch": host("12.8", RTX_3090, kernel="550.54.14"),
    "unloaded": host(None, RTX_3090, loaded=False),
}


def _custom(arch: str) -> TorchBuild:
    return TorchBuild("0.0.0+sim", "0.0.0+sim", "0.0.0+sim", "12.8", "9.10.2", ArchList.parse(arch))


BUILDS: dict[str, TorchBuild] = {
    "cpu-2.9": torch_build("2.9.1", "cpu", label=True, source="wheel"),
    "cu121-2.3": torch_build("2.3.1", "cu121", label=False, source="conda"),
    "cu126-2.9": torch_build("2.9.1", "cu126", label=True, source="wheel"),
    "cu128-2.9": torch_build("2.9.1", "cu128", label=True, source="wheel"),
    "sass-8.0": _custom("8.0"),
    "ptx-8.0": _custom("8.0+PTX"),
    "cu118-2.3": torch_build("2.3.1", "cu118", label=False, source="conda"),
    "cuda13.0": TorchBuild("0.0.0+sim", "0.0.0+sim", "0.0.0+sim", "13.0", "9.13.0", None),
}


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each build's torch, torchvision and torchaudio, laid out as in site-packages."""
    base = tmp_path_factory.mktemp("standin-sites")
    for key, build in BUILDS.items():
        for package in PACKAGES:
            for path, data in payload(build, package).items():
                target = base / key / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    return {key: base / key for key in BUILDS}


def host_env(tmp_path: Path, host_key: str) -> dict[str, str]:
    """The environment of a process on that host: its host.json, or none at all."""
    host_file = tmp_path / f"{host_key}.json"
    data = HOSTS[host_key]
    if data is not None:
        host_file.write_text(json.dumps(data))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env["LABTORCH_SIM_HOST_FILE"] = str(host_file)
    return env


def probe(python: str | Path, env: dict[str, str], *flags: str) -> dict:
    completed = subprocess.run(
        [str(python), *flags, "-c", PROBE], env=env, capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def probe_site(site: Path, env: dict[str, str]) -> dict:
    """Probe a build from its site directory alone (-S: no other site-packages)."""
    return probe(sys.executable, {**env, "PYTHONPATH": str(site)}, "-S")


@pytest.mark.parametrize(
    ("build", "host_key", "available", "gpu"),
    [
        ("cpu-2.9", "ampere-12.4", False, "AssertionError: Torch not compiled with CUDA enabled"),
        ("cu121-2.3", "ampere-12.4", True, 8.0),
        ("cu121-2.3", "blackwell-12.8", True, NO_KERNEL),
        # CUDA minor-version compatibility: a 12.x build on a 12.x driver >= 525.60.13 runs the
        # GPUs it has SASS for; a GPU that needs its PTX cannot JIT it (error 222).
        ("cu126-2.9", "ampere-12.2", True, 8.0),
        ("cu128-2.9", "hopper-12.2", True, 8.0),
        ("sass-8.0", "ampere-12.2", True, 8.0),
        ("ptx-8.0", "hopper-12.2", True, UNSUPPORTED_PTX),
        ("cu118-2.3", "ampere-11.4", True, 8.0),
        # Another major never: a 12.x build on an 11.x driver, 13.0 on a 12.x driver.
        ("cu121-2.3", "ampere-11.4", False, "RuntimeError: The NVIDIA driver on your system is"),
        ("cu126-2.9", "ampere-11.4", False, "RuntimeError: The NVIDIA driver on your system is"),
        ("cuda13.0", "blackwell-12.9", False, "RuntimeError: The NVIDIA driver on your system is"),
        ("cu126-2.9", "nvml-mismatch", False, "RuntimeError: Unexpected error from cudaGetDevi"),
        ("cu126-2.9", "none", False, "RuntimeError: Found no NVIDIA driver on your system"),
        ("cu126-2.9", "unloaded", False, "RuntimeError: Found no NVIDIA driver on your system"),
        ("cu126-2.9", "pascal-12.8", True, 8.0),
        ("cu128-2.9", "pascal-12.8", True, NO_KERNEL),
        ("cu128-2.9", "blackwell-12.8", True, 8.0),
        ("sass-8.0", "hopper-12.8", True, NO_KERNEL),
        ("ptx-8.0", "hopper-12.8", True, 8.0),
    ],
)
def test_rules(
    sites: dict[str, Path],
    tmp_path: Path,
    build: str,
    host_key: str,
    available: bool,
    gpu: float | str,
) -> None:
    result = probe_site(sites[build], host_env(tmp_path, host_key))
    assert result["version"] == BUILDS[build].torch
    assert result["available"] is available
    assert result["count"] == (1 if available else 0)
    assert result["cpu"] == 8.0
    if isinstance(gpu, float):
        assert result["gpu"] == [gpu]
    else:
        assert result["gpu"][0].startswith(gpu)


def test_arch_list_is_the_builds_when_available_and_empty_otherwise(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    visible = probe_site(sites["cu128-2.9"], host_env(tmp_path, "pascal-12.8"))
    hidden = probe_site(sites["cu128-2.9"], host_env(tmp_path, "none"))
    ptx = probe_site(sites["ptx-8.0"], host_env(tmp_path, "hopper-12.8"))
    assert visible["arch"] == ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    assert hidden["arch"] == []
    assert ptx["arch"] == ["sm_80", "compute_80"]


def test_a_gpu_without_kernels_is_named_in_a_warning_as_real_torch_does(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    result = probe_site(sites["cu121-2.3"], host_env(tmp_path, "blackwell-12.8"))
    assert result["names"] == ["NVIDIA GeForce RTX 5090"]
    assert result["capability"] == [12, 0]
    assert any("sm_120 is not compatible" in warning for warning in result["warnings"])


def test_an_old_driver_warns_and_reports_its_cuda_version(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    result = probe_site(sites["cu126-2.9"], host_env(tmp_path, "ampere-11.4"))
    assert result["capability"].startswith("RuntimeError: The NVIDIA driver on your system is")
    assert any("(found version 11040)" in warning for warning in result["warnings"])


def test_minor_version_compatibility_runs_quietly_and_reports_the_build(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    """Real torch neither warns nor hides the arch list when the driver is an older 12.x."""
    result = probe_site(sites["cu128-2.9"], host_env(tmp_path, "ampere-12.2"))
    assert (result["available"], result["cuda"], result["gpu"]) == (True, "12.8", [8.0])
    assert result["arch"] == ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
    assert result["warnings"] == []


def test_the_minor_compat_floor_is_the_standins_own_and_agrees_with_the_reference() -> None:
    """The stand-in's floors are NVIDIA's (Table 1/2); labtorch/data's must say the same."""
    text = (SOURCE_DIR / "torch" / "cuda.py").read_text()
    assert "MINOR_COMPAT_FLOOR = {11: (450, 80, 2), 12: (525, 60, 13), 13: (580,)}" in text
    assert "labtorch.data" not in text.replace("labtorch/data", "")
    compat = load_compat()
    floors = {
        key: compat.cuda[key].minor_compat["linux"] for key in ("11.8", "12.1", "12.8", "13.0")
    }
    assert floors == {
        "11.8": "450.80.02",
        "12.1": "525.60.13",
        "12.8": "525.60.13",
        "13.0": "580",
    }


def test_cudnn_and_cuda_versions_come_from_the_build(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    """cuDNN answers from the build even with no driver: 8.9.2 is 8902, 9.10.2 is 91002."""
    answers = {
        key: probe_site(sites[key], host_env(tmp_path, "none"))
        for key in ("cpu-2.9", "cu121-2.3", "cu126-2.9")
    }
    found = {key: (r["cuda"], r["cudnn"], r["cudnn_available"]) for key, r in answers.items()}
    assert found == {
        "cpu-2.9": (None, None, False),
        "cu121-2.3": ("12.1", 8902, True),
        "cu126-2.9": ("12.6", 91002, True),
    }


def test_each_gpu_of_a_mixed_host_runs_what_the_build_has_for_it(
    sites: dict[str, Path], tmp_path: Path
) -> None:
    result = probe_site(sites["cu128-2.9"], host_env(tmp_path, "mixed-12.8"))
    assert result["count"] == 2
    assert result["names"] == ["NVIDIA GeForce GTX 1080 Ti", "NVIDIA GeForce RTX 3090"]
    assert result["gpu"] == [NO_KERNEL, 8.0]


def test_companions_refuse_a_torch_of_another_cuda(tmp_path: Path) -> None:
    """torchvision fails on another CUDA major, torchaudio on any other CUDA version."""
    torch_cu126 = torch_build("2.9.1", "cu126", label=True, source="wheel")
    torch_cu128 = torch_build("2.9.1", "cu128", label=True, source="wheel")
    site = tmp_path / "site"
    files = {
        **payload(torch_cu126, "torch"),
        **payload(torch_cu128, "torchvision"),
        **payload(torch_cu128, "torchaudio"),
    }
    for path, data in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes(data)
    env = {**host_env(tmp_path, "none"), "PYTHONPATH": str(site)}

    def imports(package: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-S", "-c", f"import {package}"]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    assert imports("torchvision").returncode == 0
    failed = imports("torchaudio")
    assert "PyTorch has CUDA version 12.6 whereas TorchAudio has CUDA version 12.8" in failed.stderr


# ---- installed from the mirror ---------------------------------------------------------------

# py-rattler 0.28 can crash at interpreter exit (SIGSEGV or SIGABRT in PyGILState_Release) after
# an install, so it runs in its own process, which leaves with os._exit once its work is done.
RATTLER = r"""
import asyncio, json, os, sys
import rattler

url, channels, specs, cuda, prefix, cache = json.loads(sys.argv[1])
virtual = [
    rattler.GenericVirtualPackage(
        rattler.PackageName("__cuda"), rattler.Version(cuda), rattler.BuildString("0")
    )
] if cuda else []

async def main():
    records = await rattler.solve(
        [rattler.Channel(f"{url}/anaconda/{channel}") for channel in channels],
        [rattler.MatchSpec(spec, strict=False) for spec in specs],
        gateway=rattler.Gateway(cache_dir=f"{cache}/repodata"),
        platforms=["linux-64", "noarch"],
        virtual_packages=virtual,
        add_pip_as_python_dependency=True,
    )
    print(json.dumps({r.name.normalized: f"{r.version}-{r.build}" for r in records}))
    if prefix:
        await rattler.install(
            records, target_prefix=prefix, cache_dir=f"{cache}/pkgs", show_progress=False
        )

asyncio.run(main())
sys.stdout.flush()
os._exit(0)
"""


FORGE_2_7_1 = load_compat().find_release("2.7.1")[0].conda_forge
NEWEST_FORGE_CUDA = FORGE_2_7_1.variants["linux-64"][-1].replace("cu", "cuda")


@pytest.fixture(scope="module")
def mirror_url(tmp_path_factory: pytest.TempPathFactory):
    """A mirror of the built content (built once per session: the stamp makes rebuilds no-ops)."""
    root = tmp_path_factory.getbasetemp() / "mirror-root"
    build_mirror_content(root)
    state = tmp_path_factory.mktemp("standin-mirror-state")
    yield start_mirror(root, state).url
    stop_mirror(state)


def conda(
    url: str,
    cache: Path,
    channels: list[str],
    specs: list[str],
    cuda: str | None = None,
    prefix: Path | None = None,
) -> dict[str, str]:
    """Solve (and install into ``prefix``) with rattler; the records as ``name: version-build``."""
    pytest.importorskip("rattler")
    arguments = json.dumps(
        [url, channels, specs, cuda, str(prefix) if prefix else None, str(cache)]
    )
    completed = subprocess.run(
        [sys.executable, "-c", RATTLER, arguments], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


@pytest.mark.parametrize(
    ("channels", "specs", "cuda", "expected"),
    [
        (["cloud/pytorch", "pkgs/main"], ["pytorch=2.3.1", "cpuonly"], None, "py3.11_cpu_0"),
        (
            ["cloud/pytorch", "cloud/nvidia", "pkgs/main"],
            ["pytorch=2.3.1", "pytorch-cuda=11.8"],
            "12.4",
            "py3.11_cuda11.8_cudnn8.7.0_0",
        ),
        (["cloud/conda-forge"], ["pytorch"], None, "cpu_generic_py311_"),
        # Unpinned, the newest CUDA build conda-forge has wins (its cuda-version constrains
        # __cuda to the major version only); the deploy pins the build string instead.
        (["cloud/conda-forge"], ["pytorch"], "12.8", f"{NEWEST_FORGE_CUDA}_generic_py311_"),
        (["cloud/conda-forge"], ["pytorch=*=cuda126*"], "12.8", "cuda126_generic_py311_"),
    ],
)
def test_conda_solves_pick_the_variant_as_the_real_channels_do(
    mirror_url: str,
    tmp_path: Path,
    channels: list[str],
    specs: list[str],
    cuda: str | None,
    expected: str,
) -> None:
    records = conda(mirror_url, tmp_path, channels, specs, cuda)
    assert expected in records["pytorch"]
    assert "python" in records
    assert "pip" in records


@needs_host_python
def test_a_conda_env_from_the_mirror_runs_the_standin_on_the_host_python(
    mirror_url: str, tmp_path: Path
) -> None:
    prefix = tmp_path / "env"
    specs = ["python=3.11", "pytorch=2.3.1=*cuda12.1*", "torchvision", "torchaudio"]
    channels = ["cloud/pytorch", "cloud/nvidia", "pkgs/main"]
    conda(mirror_url, tmp_path / "cache", channels, specs, prefix=prefix)
    result = probe(prefix / "bin" / "python", host_env(tmp_path, "pascal-12.8"))
    assert result["prefix"] == str(prefix)
    assert (result["version"], result["cuda"], result["cudnn"]) == ("2.3.1", "12.1", 8902)
    assert "sm_61" in result["arch"]  # the conda builds had Pascal's consumer SASS
    assert result["gpu"] == [8.0]


def pip_install(python: Path, *arguments: str) -> None:
    """pip with no configuration but the command line (this machine's pip.conf adds indexes)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1")
    command = [str(python), "-m", "pip", "install", "--quiet", *arguments]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr


@needs_host_python
def test_pip_into_a_venv_takes_the_cu126_wheels_from_the_find_links_page(
    mirror_url: str, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([str(HOST_PYTHON), "-m", "venv", str(venv)], check=True)
    pip_install(
        venv / "bin" / "python",
        f"--index-url={mirror_url}/pypi/web/simple",
        f"--find-links={mirror_url}/pytorch-wheels/cu126/",
        "torch==2.9.1+cu126",
        "torchvision",
        "torchaudio",
    )
    result = probe(venv / "bin" / "python", host_env(tmp_path, "pascal-12.8"))
    assert (result["version"], result["cuda"]) == ("2.9.1+cu126", "12.6")
    assert result["gpu"] == [8.0]


@needs_host_python
def test_pip_in_a_conda_env_gets_pypis_default_cuda_build(mirror_url: str, tmp_path: Path) -> None:
    prefix = tmp_path / "env"
    conda(mirror_url, tmp_path / "cache", ["pkgs/main"], ["python=3.11", "pip"], prefix=prefix)
    pip_install(prefix / "bin" / "python", f"--index-url={mirror_url}/pypi/web/simple", "torch")
    result = probe(prefix / "bin" / "python", host_env(tmp_path, "pascal-12.8"))
    assert (result["version"], result["cuda"]) == ("2.9.1", "12.8")
    assert result["gpu"] == [NO_KERNEL]  # PyPI's cu128 dropped Pascal
