"""The deploy's pure pieces: settings, the snapshot script run for real, env comparison, NVML
mismatch detection, the condarc and pip.conf merges."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from labtorch.data.gpus import Gpu
from labtorch.deploy.inputs import catalog_for, gpu_state, request_for
from labtorch.deploy.settings import Settings, SettingsError, check_keys, settings_from
from labtorch.facts.host_state import InstalledPackage, host_state_script, parse_host_state
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport
from labtorch.operations.util.condarc import CondaMirrorConfig, CondarcError, condarc_change
from labtorch.operations.util.pipconf import PipConfError, pip_conf_change
from labtorch.rules.envdiff import CREATE, OK, REPAIR, env_diff, pin_problem
from labtorch.rules.model import PackagePin

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"torch_relase": "2.3"}, "torch_relase", "unknown setting"),
        ({"torch_release": "latest"}, "torch_release", "must look like 2.3.1 or 2.3"),
        ({"torch_installer": "poetry"}, "torch_installer", "must be one of conda, pip"),
        ({"torch_variant": "cuda12"}, "torch_variant", "must look like auto, cpu or cu121"),
        ({"torch_python": 3.11}, "torch_python", 'quote it, as torch_python = "3.10"'),
        ({"torch_toolkit": "yes"}, "torch_toolkit", "must be True or False"),
        ({"torch_env": "my env"}, "torch_env", "letters, digits"),
        ({"torch_condarc_scope": "site"}, "torch_condarc_scope", "or an absolute path"),
        ({"torch_mirror_url": "ftp://x"}, "torch_mirror_url", "must look like https://"),
        ({"torch_wheel_mirror_url": "https://m/whl/"}, "torch_wheel_mirror_url", "{variant}"),
        ({"torch_mirror": "tsinghua"}, "torch_mirror", "must be a mirror of labtorch/data/"),
        ({"torch_wheel_mirror": "pypi"}, "torch_wheel_mirror", "indexes (aliyun, nju, upstream)"),
        ({"torch_wheel_mirror": "tuna"}, "torch_wheel_mirror", "indexes (aliyun, nju, upstream)"),
        ({"torch_fallback_mirrors": "bfsu"}, "torch_fallback_mirrors", 'a list such as ["bfsu"]'),
        (
            {"torch_fallback_mirrors": ["bfsu", "ftp://m"]},
            "torch_fallback_mirrors",
            "not 'ftp://m'",
        ),
        ({"torch_fallback_mirrors": ["nowhere"]}, "torch_fallback_mirrors", "base URLs, not 'now"),
    ],
)
def test_bad_settings_name_where_and_key(data, key, problem):
    with pytest.raises(SettingsError) as caught:
        check_keys(data, "group_data/gpu.py")
    assert caught.value.where == "group_data/gpu.py"
    assert caught.value.key == key
    assert problem in str(caught.value)
    assert str(caught.value).startswith(f"group_data/gpu.py: {key}: ")


def test_settings_ignore_other_keys_and_fill_defaults():
    data = {"ssh_user": "root", "torch_release": "2.9", "torch_python": None}
    check_keys(data, "inventory host a")
    settings = settings_from(data)
    assert settings.release == "2.9"
    assert settings.python is None
    assert settings.installer == Settings().installer == "conda"
    assert settings_from({"torch_fallback_mirrors": ["bfsu"]}).fallback_mirrors == ("bfsu",)


def test_group_data_all_is_valid_and_documents_every_key():
    source = Path("group_data/all.py").read_text()
    data: dict = {}
    exec(compile(source, "group_data/all.py", "exec"), data)
    settings = {k: v for k, v in data.items() if k.startswith("torch_")}
    check_keys(settings, "group_data/all.py")
    assert set(settings) == {f"torch_{name}" for name in Settings.__dataclass_fields__}


def test_site_mirror_url_becomes_the_plan_mirror():
    settings = Settings(
        mirror_url="http://127.0.0.1:8080",
        wheel_mirror_url="http://127.0.0.1:8080/pytorch-wheels/{variant}/",
    )
    catalog = catalog_for(settings)
    request = request_for(settings)
    site = catalog[request.mirror]
    assert site.channel_url("pytorch") == "http://127.0.0.1:8080/anaconda/cloud/pytorch"
    assert site.pypi == "http://127.0.0.1:8080/pypi/web/simple"
    assert catalog[request.wheel_mirror].pytorch_wheels.url("cu126") == (
        "http://127.0.0.1:8080/pytorch-wheels/cu126/"
    )


# ---------------------------------------------------------------- NVML mismatch


def _report(driver: str) -> SmiReport:
    return SmiReport(driver, "12.8", (Gpu(0, "NVIDIA H100"),), "xml")


@pytest.mark.parametrize(
    ("kernel", "driver", "mismatch"),
    [
        ("570.133.20", "570.133.20", False),
        ("570.124.06", "570.133.20", True),
        (None, "570.133.20", False),
    ],
)
def test_kernel_module_older_than_driver_is_a_pending_reboot(kernel, driver, mismatch):
    snapshot = parse_host_state(["@@labtorch system", "Linux", "x86_64", "0", "/root"])
    from dataclasses import replace

    state = gpu_state(replace(snapshot, kernel_driver=kernel, nvidia_smi=_report(driver)))
    assert isinstance(state, SmiFailure) == mismatch
    if mismatch:
        assert state.kind == SmiFailureKind.NVML_MISMATCH
        assert "reboot" in state.meaning


# ---------------------------------------------------------------- env comparison


def pin(name, version, build=None):
    return PackagePin(name, version, build, "pytorch", "u")


def installed(name, version, build=None):
    return InstalledPackage(name, version, build, None)


@pytest.mark.parametrize(
    ("wanted", "have", "problem"),
    [
        (pin("torch", "2.9.1+cu126"), installed("torch", "2.9.1+cu126"), None),
        (pin("torch", "2.9.1+cu126"), installed("torch", "2.9.1+cpu"), "2.9.1+cpu is installed"),
        (pin("torch", "2.9.1"), installed("torch", "2.9.1+cpu"), "2.9.1+cpu is installed"),
        (pin("torch", "2.9.1"), None, "torch is missing"),
        (pin("pytorch", "2.3.1", "py3.11_cuda12.1_cudnn8.9.2_0"),
         installed("pytorch", "2.3.1", "py3.11_cpu_0"), "py3.11_cpu_0 is installed"),
        (pin("pytorch", "2.7.1", "cuda126_*_py311_*"),
         installed("pytorch", "2.7.1", "cuda126_generic_py311_habc_200"), None),
        (pin("pytorch", "2.7.1", "cuda126_*_py311_*"),
         installed("pytorch", "2.7.1", "cuda129_generic_py311_habc_200"), "cuda129"),
        (pin("pytorch", "2.7.1", "cuda126_*"), installed("pytorch", "2.8.0", "cuda126_x"), "2.8.0"),
        (pin("cuda-nvcc", "12.6.*"), installed("cuda-nvcc", "12.6.85", "0"), None),
        (pin("cuda-nvcc", "12.6.*"), installed("cuda-nvcc", "12.8.93", "0"), "12.8.93"),
    ],
)  # fmt: skip
def test_pin_problem(wanted, have, problem):
    found = pin_problem(wanted, have)
    if problem is None:
        assert found is None
    else:
        assert problem in found


def test_env_verdicts():
    cuda = [pin("pytorch", "2.3.1", "py3.11_cuda12.1_cudnn8.9.2_0"), pin("pytorch-cuda", "12.1")]
    assert env_diff(cuda, None).action == CREATE
    good = {"pytorch": installed("pytorch", "2.3.1", "py3.11_cuda12.1_cudnn8.9.2_0"),
            "pytorch-cuda": installed("pytorch-cuda", "12.1", "h_0")}  # fmt: skip
    assert env_diff(cuda, good).action == OK
    cpu = {"pytorch": installed("pytorch", "2.3.1", "py3.11_cpu_0"),
           "cpuonly": installed("cpuonly", "2.0", "0")}  # fmt: skip
    verdict = env_diff(cuda, cpu)
    assert verdict.action == REPAIR
    assert verdict.remove == ("cpuonly",)
    back = env_diff([pin("pytorch", "2.3.1", "py3.11_cpu_0"), pin("cpuonly", "2.0")], good)
    assert back.remove == ("pytorch-cuda",)


# ---------------------------------------------------------------- condarc and pip.conf merges

CONFIG = CondaMirrorConfig(
    ("conda-forge",), ("https://m/anaconda/pkgs/main",), {"conda-forge": "https://m/anaconda/cloud"}
)


def test_condarc_merge_keeps_user_keys_and_is_idempotent():
    user = (
        "envs_dirs: [/data/envs]\ncustom_channels: {bioconda: https://b/cloud}\nssl_verify: false\n"
    )
    first = condarc_change(user, CONFIG)
    data = yaml.safe_load(first)
    assert data["envs_dirs"] == ["/data/envs"] and data["ssl_verify"] is False
    assert data["custom_channels"] == {
        "bioconda": "https://b/cloud",
        "conda-forge": "https://m/anaconda/cloud",
    }
    assert data["channels"] == ["conda-forge"]
    assert condarc_change(first, CONFIG) is None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("- a list\n", "not a YAML mapping"),
        ("custom_channels: [x]\n", "custom_channels is not a mapping"),
        ("channels: [conda-forge\nssl_verify: false\n", "not valid YAML at line 2, column 11"),
    ],
)
def test_condarc_that_is_not_a_mapping_is_an_error(bad, message):
    with pytest.raises(CondarcError, match=f"^{re.escape(message)}$"):
        condarc_change(bad, CONFIG)


def test_pip_conf_merge():
    first = pip_conf_change("[global]\ntimeout = 60\n", "https://m/pypi/web/simple")
    assert first == "[global]\ntimeout = 60\nindex-url = https://m/pypi/web/simple\n"
    assert pip_conf_change(first, "https://m/pypi/web/simple") is None
    assert pip_conf_change(None, "https://m/pypi/web/simple") == (
        "[global]\nindex-url = https://m/pypi/web/simple\n"
    )
    with pytest.raises(PipConfError):
        pip_conf_change("index-url = x\n", "https://m/pypi/web/simple")


# ---------------------------------------------------------------- the snapshot script, run for real


def _fake_host(root: Path) -> dict[str, str]:
    """A HOME with a Miniconda-like conda, an env with conda-meta, and a fake nvidia-smi."""
    home = root / "home"
    conda_root = home / "miniconda3"
    (conda_root / "bin").mkdir(parents=True)
    conda = conda_root / "bin" / "conda"
    conda.write_text("#!/bin/sh\nexit 1\n")  # the snapshot must not need to run it
    conda.chmod(0o755)
    (conda_root / "conda-meta").mkdir()
    (conda_root / "conda-meta" / "conda-26.7.1-py311_0.json").write_text("{}")
    (conda_root / ".condarc").write_text("channels: [defaults]\n")
    (conda_root / ".condarc.labtorch-backup").write_text("channels: [defaults]\n")
    meta = conda_root / "envs" / "torch" / "conda-meta"
    meta.mkdir(parents=True)
    record = {
        "name": "pytorch",
        "url": "https://m/anaconda/cloud/pytorch/linux-64/pytorch-2.3.1-py3.11_cpu_0.tar.bz2",
    }
    (meta / "pytorch-2.3.1-py3.11_cpu_0.json").write_text(json.dumps(record, indent=2))
    (meta / "history").write_text("")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    xml = FIXTURES / "xml_rtx3090_590.44.01.xml"
    smi.write_text(
        f'#!/bin/sh\ncase "$*" in\n  *compute_cap*) echo "0, 8.6" ;;\n  *) cat {xml} ;;\nesac\n'
    )
    smi.chmod(0o755)
    return {"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin", "CONDA_EXE": ""}


def test_snapshot_script_on_a_fake_host(tmp_path):
    env = _fake_host(tmp_path)
    script = host_state_script("conda", "torch", "system", "/opt/labtorch/venvs", "env")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True)
    snapshot = parse_host_state(done.stdout.splitlines())
    root = f"{env['HOME']}/miniconda3"
    assert snapshot.conda_exe == f"{root}/bin/conda"
    assert snapshot.conda_version == "26.7.1"
    assert snapshot.condarc_path == f"{root}/.condarc"
    assert snapshot.condarc == "channels: [defaults]\n"
    assert snapshot.condarc_backup is True
    assert snapshot.env_prefix == f"{root}/envs/torch"
    assert snapshot.env_packages == {
        "pytorch": InstalledPackage("pytorch", "2.3.1", "py3.11_cpu_0",
                                    "https://m/anaconda/cloud/pytorch/linux-64/pytorch-2.3.1-py3.11_cpu_0.tar.bz2")
    }  # fmt: skip
    assert snapshot.pip_conf_path == f"{root}/envs/torch/pip.conf"
    assert snapshot.pip_conf is None
    report = snapshot.nvidia_smi
    assert report.driver_version == "590.44.01" and report.cuda_version == "13.1"
    assert report.gpus[0].capability_source == "reported"
    assert snapshot.platform == "linux-64"
    # It read the host it ran on: the fake HOME it was given, this machine's uid and glibc.
    assert snapshot.home == env["HOME"] != os.environ.get("HOME")
    assert snapshot.is_root is (os.geteuid() == 0)
    assert snapshot.glibc == os.confstr("CS_GNU_LIBC_VERSION").removeprefix("glibc ")


def test_snapshot_script_without_anything(tmp_path):
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "CONDA_EXE": ""}
    script = host_state_script("pip", "torch", "user", str(tmp_path / "venvs"), "global")
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True)
    snapshot = parse_host_state(done.stdout.splitlines())
    assert snapshot.nvidia_smi is None
    assert snapshot.conda_exe is None
    assert snapshot.env_prefix is None and snapshot.env_packages is None
    assert snapshot.pip_conf_path == "/etc/pip.conf"


def test_snapshot_rejects_other_output():
    with pytest.raises(ValueError, match="not labtorch host state output"):
        parse_host_state(["hello"])


# ---------------------------------------------------------------- reusing the last probe

LISTING = ("pytorch-2.7.1-cuda126_x_200.json", "python-3.11.2-h_0.json")


@pytest.mark.parametrize(
    ("cache", "listing", "kernel", "reused"),
    [
        ({"listing": list(LISTING), "kernel_driver": "570.86.15"}, LISTING, "570.86.15", True),
        ({"listing": list(LISTING), "kernel_driver": "570.86.15"}, LISTING[:1], "570.86.15", False),
        ({"listing": list(LISTING), "kernel_driver": "570.86.15"}, LISTING, "580.65.06", False),
        ({"listing": list(LISTING), "kernel_driver": None}, LISTING, None, True),
        (None, LISTING, "570.86.15", False),
        ({"listing": [], "kernel_driver": None}, (), None, False),
    ],
)
def test_last_probe_is_reused_only_when_env_and_driver_are_unchanged(
    cache, listing, kernel, reused
):
    from dataclasses import replace

    from labtorch.deploy.inputs import reusable_probe

    snapshot = parse_host_state(["@@labtorch system", "Linux", "x86_64", "0", "/root"])
    snapshot = replace(snapshot, probe_cache=cache, env_listing=listing, kernel_driver=kernel)
    assert reusable_probe(snapshot) == (cache if reused else None)
