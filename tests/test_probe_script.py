"""The probe script (labtorch.facts.probe_script) run for real, as a host runs it: its text on
stdin of an env's own python (a venv here, given conda-meta where it plays a conda env). What it
says each torch-family package came from (conda-meta, else pip's direct_url.json, else the
install report labtorch asks pip to write), the env's listing, and the result it keeps with
``--keep <kernel driver>``, which only the deploy asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labtorch.facts.host_state import host_state_script, parse_host_state
from labtorch.facts.probe_output import PROBE_SOURCE, probe_result
from labtorch.facts.probe_script import CACHE, KEEP, PIP_REPORT
from labtorch.rules.envdiff import REPAIR, env_diff
from labtorch.rules.model import PackagePin

MIRROR = "http://mirror.example"
FORGE = f"{MIRROR}/anaconda/cloud/conda-forge"
WHEELS = f"{MIRROR}/pytorch-wheels/cu126"


@pytest.fixture
def env(tmp_path: Path) -> Path:
    """An env with its own python and nothing installed."""
    prefix = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    return prefix


def site_packages(prefix: Path) -> Path:
    return next((prefix / "lib").glob("python3*/site-packages"))


def conda_record(prefix: Path, name: str, version: str, build: str, channel: str) -> str:
    meta = prefix / "conda-meta"
    meta.mkdir(exist_ok=True)
    filename = f"{name}-{version}-{build}.json"
    url = f"{channel}/linux-64/{name}-{version}-{build}.tar.bz2"
    record = {"name": name, "version": version, "build": build, "channel": channel, "url": url}
    (meta / filename).write_text(json.dumps(record, indent=2))
    return filename


def dist_info(prefix: Path, project: str, version: str, direct_url: str | None = None) -> str:
    name = f"{project.replace('-', '_')}-{version}.dist-info"
    folder = site_packages(prefix) / name
    folder.mkdir()
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
    )
    if direct_url:
        (folder / "direct_url.json").write_text(json.dumps({"url": direct_url, "archive_info": {}}))
    return name


def pip_report(prefix: Path, *installed: tuple[str, str]) -> None:
    """pip's --report: what it installed, each with the URL it downloaded."""
    entries = [
        {"metadata": {"name": name, "version": "2.9.1"}, "download_info": {"url": url}}
        for name, url in installed
    ]
    (prefix / PIP_REPORT).write_text(json.dumps({"version": "1", "install": entries}))


def probe(prefix: Path, *argv: str) -> dict:
    done = subprocess.run(
        [str(prefix / "bin" / "python"), "-", *argv],
        input=PROBE_SOURCE,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = probe_result(done.stdout.splitlines())
    assert result is not None, done.stdout + done.stderr
    return result


def test_conda_origin_is_the_packages_record(env):
    conda_record(env, "pytorch", "2.7.1", "cuda126_generic_py311_h0_200", FORGE)
    conda_record(env, "torchvision", "0.22.1", "cuda126_py311_h1_0", FORGE)
    origins = probe(env)["origins"]
    assert origins["torch"] == {
        "installer": "conda",
        "channel": FORGE,
        "url": f"{FORGE}/linux-64/pytorch-2.7.1-cuda126_generic_py311_h0_200.tar.bz2",
    }
    assert origins["torchvision"]["url"].endswith("/torchvision-0.22.1-cuda126_py311_h1_0.tar.bz2")
    assert origins["torchaudio"] is None  # neither a conda record nor a distribution


def test_pip_installed_torch_in_a_conda_env_is_pips(env):
    """conda-meta exists (python, and packages whose file names start like pytorch's), but torch
    came from pip: its origin is pip's, with the URL pip recorded."""
    conda_record(env, "python", "3.11.2", "h_0", f"{MIRROR}/anaconda/pkgs/main")
    conda_record(env, "pytorch-cuda", "12.1", "ha16c6d3_5", f"{MIRROR}/anaconda/cloud/pytorch")
    conda_record(env, "pytorch-mutex", "1.0", "cuda", f"{MIRROR}/anaconda/cloud/pytorch")
    dist_info(env, "torch", "2.9.1+cu126", direct_url=f"{WHEELS}/torch-2.9.1%2Bcu126-x.whl")
    origins = probe(env)["origins"]
    assert origins["torch"] == {
        "installer": "pip",
        "channel": None,
        "url": f"{WHEELS}/torch-2.9.1%2Bcu126-x.whl",
    }


def test_pip_origin_from_the_install_report_when_no_direct_url(env):
    dist_info(env, "torch", "2.9.1+cpu")
    dist_info(env, "torchaudio", "2.9.1+cpu")
    pip_report(env, ("torch", f"{WHEELS}/torch.whl"), ("TorchAudio", f"{WHEELS}/torchaudio.whl"))
    origins = probe(env)["origins"]
    assert origins["torch"] == {"installer": "pip", "channel": None, "url": f"{WHEELS}/torch.whl"}
    # The report's names are matched without case, as pip normalises them.
    assert origins["torchaudio"]["url"] == f"{WHEELS}/torchaudio.whl"
    assert origins["torchvision"] is None


def test_pip_origin_without_a_record_of_where_is_unknown_not_absent(env):
    dist_info(env, "torch", "2.9.1")
    pip_report(env, ("torchvision", f"{WHEELS}/torchvision.whl"))  # not torch's
    assert probe(env)["origins"]["torch"] == {"installer": "pip", "channel": None, "url": None}


def test_listing_is_every_record_of_the_env_sorted(env):
    names = [
        conda_record(env, "python", "3.11.2", "h_0", f"{MIRROR}/anaconda/pkgs/main"),
        conda_record(env, "pytorch", "2.7.1", "cpu_generic_py311_h2_0", FORGE),
        dist_info(env, "typing-extensions", "4.12.2"),
        dist_info(env, "torch", "2.9.1+cpu"),
    ]
    (env / "conda-meta" / "history").write_text("")  # not a record
    result = probe(env)
    assert result["listing"] == sorted(names)
    assert result["prefix"] == str(env)
    assert result["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_only_keep_writes_the_result_into_the_env(env):
    result = probe(env)
    assert "kernel_driver" not in result
    assert not (env / CACHE).exists()


@pytest.mark.parametrize(
    ("given", "kept"), [(["570.86.15"], "570.86.15"), ([""], None), ([], None)]
)
def test_keep_writes_the_result_with_the_kernel_driver_it_was_given(env, given, kept):
    conda_record(env, "pytorch", "2.7.1", "cpu_generic_py311_h2_0", FORGE)
    result = probe(env, KEEP, *given)
    assert result["kernel_driver"] == kept
    cache = (env / CACHE).read_text()
    assert json.loads(cache) == result
    assert cache == json.dumps(result, sort_keys=True) + "\n"


def test_keep_where_the_env_cannot_be_written_still_prints_the_result(env):
    (env / CACHE).mkdir()  # open(..., "w") fails: the probe's answer must not
    result = probe(env, KEEP, "590.44.01")
    assert result["kernel_driver"] == "590.44.01"
    assert (env / CACHE).is_dir()


def test_pip_torch_in_a_conda_env_is_not_the_conda_package_the_plan_pins(tmp_path):
    """The deploy's side of the same env: once conda-meta exists the snapshot reads the env's
    packages from it, so a torch that pip put there is not the plan's conda pytorch, and the
    env is repaired (conda installs its pytorch) instead of being taken as converged."""
    home = tmp_path / "home"
    conda = home / "miniconda3" / "bin" / "conda"
    conda.parent.mkdir(parents=True)
    conda.write_text("#!/bin/sh\nexit 1\n")
    conda.chmod(0o755)
    prefix = home / "miniconda3" / "envs" / "torch"
    prefix.mkdir(parents=True)
    conda_record(prefix, "python", "3.11.2", "h_0", f"{MIRROR}/anaconda/pkgs/main")
    site = prefix / "lib" / "python3.11" / "site-packages"
    (site / "torch-2.7.1.dist-info").mkdir(parents=True)
    script = host_state_script("conda", "torch", "system", "/opt/labtorch/venvs", "env")
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "CONDA_EXE": ""}
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True)
    state = parse_host_state(done.stdout.splitlines())
    assert set(state.env_packages) == {"python"}
    assert "torch-2.7.1.dist-info" in state.env_listing  # a change the probe cache notices
    pin = PackagePin("pytorch", "2.7.1", "cuda126_*", "conda-forge", FORGE)
    diff = env_diff([pin], state.env_packages, [MIRROR])
    assert (diff.action, diff.problems) == (
        REPAIR,
        ("pytorch is missing (plan: pytorch 2.7.1 cuda126_*)",),
    )
