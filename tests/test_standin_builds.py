"""The stand-in torch reports what the real builds report, not what labtorch's data says.

Each CUDA build the simulated mirror serves carries ``torch.version.cuda`` and
``torch.cuda.get_arch_list()`` from labtorch_sim.real_builds (recorded from the real builds, with
where each was read), whatever labtorch/data/releases.yaml says. So the planner and the lab's
probe no longer share their data: the last tests plan every GPU host of the default lab on every
route the mirror serves, run the served build's stand-in on that host's GPUs with the real probe
script, and judge it as a deploy does; with releases.yaml's arch lists the plans pass, and with
one wrong arch list (2.9's cu128 claiming Pascal) the Pascal host's plan fails on the lab.
"""

from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from labtorch.data.compat import ArchList, load_compat
from labtorch.data.gpus import ComputeCapability, Gpu
from labtorch.data.mirrors import load_catalog
from labtorch.deploy.settings import Settings
from labtorch.facts.nvidia_smi import SmiReport
from labtorch.facts.probe_output import PROBE_SOURCE, probe_result
from labtorch.rules.model import HostFacts, Request
from labtorch.rules.plan import plan_for_host
from labtorch.rules.verdict import Expectation, judge
from labtorch_sim import mirror_content
from labtorch_sim.fakedriver import host_json
from labtorch_sim.mirror_content import torch_build
from labtorch_sim.profiles import Profile, load_profiles
from labtorch_sim.real_builds import BUILDS, real_build
from labtorch_sim.standin_torch import arch_names, payload

COMPAT = load_compat()


# ---------------------------------------------------------------- the table itself


@pytest.mark.parametrize("build", BUILDS, ids=lambda b: f"{b.source}-{b.torch}-{b.variant}")
def test_each_recorded_build_is_well_formed(build):
    """Its CUDA is the variant's; its arch list is in torch's form (sm_ ascending, at most one
    compute_ last) and survives the stand-in's own reading; it says where it was read."""
    digits = build.variant.removeprefix("cu")
    assert build.cuda == f"{digits[:-1]}.{digits[-1]}"
    sass = [name for name in build.arch_list if name.startswith("sm_")]
    ptx = [name for name in build.arch_list if name.startswith("compute_")]
    assert list(build.arch_list) == sass + ptx and len(ptx) <= 1
    assert sass == sorted(sass, key=lambda name: int(name[3:]))
    assert arch_names(ArchList.from_torch(list(build.arch_list))) == list(build.arch_list)
    assert re.search(r"(feedstock|builder|pytorch/pytorch|moi90)", build.read_from)


def test_an_unrecorded_build_is_an_error_not_a_guess():
    with pytest.raises(KeyError, match=r"no real wheel build of torch 2\.9\.1 cu130 is recorded"):
        real_build("wheel", "2.9.1", "cu130")


# ---------------------------------------------------------------- what the mirror serves


def _build_constants(source: str) -> dict:
    """The constants of a stand-in's generated torch/_build.py."""
    tree = ast.parse(source)
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
    }


def _served_torch(root: Path) -> dict[tuple[str, str, str], dict]:
    """Every torch the mirror serves, by (source, release, variant): its _build.py constants.
    The variant is read from what is served (a conda build string, a wheel's label, PyPI's
    wheel's CUDA runtime pin), not from labtorch's data."""
    served = {}
    for path in sorted((root / "anaconda" / "cloud").glob("*/linux-64/pytorch-*.tar.bz2")):
        source = {"pytorch": "conda", "conda-forge": "forge"}[path.parent.parent.name]
        name, release, build = path.name.removesuffix(".tar.bz2").rsplit("-", 2)
        if name != "pytorch":  # pytorch-cuda, pytorch-mutex
            continue
        with tarfile.open(path) as archive:
            text = archive.extractfile("lib/python3.11/site-packages/torch/_build.py").read()
        cuda = re.search(r"cuda(\d+)\.?(\d)_", build)
        variant = f"cu{cuda.group(1)}{cuda.group(2)}" if cuda else "cpu"
        served[(source, release, variant)] = _build_constants(text.decode())
    wheels = [*(root / "pypi/web/packages").glob("torch-*.whl"),
              *(root / "pytorch-wheels").glob("*/torch-*.whl")]  # fmt: skip
    for path in wheels:
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
            constants = _build_constants(archive.read("torch/_build.py").decode())
            version = path.name.split("-")[1]
            metadata = archive.read(f"torch-{version}.dist-info/METADATA").decode()
        release, _, label = version.partition("+")
        if not label:  # PyPI's build: its CUDA is the runtime it pins (12.8.90 -> cu128)
            runtime = re.search(r"nvidia-cuda-runtime-cu12==(\d+)\.(\d+)\.", metadata)
            label = f"cu{runtime.group(1)}{runtime.group(2)}" if runtime else "cpu"
            served[("pypi", release, label)] = constants
        served[("wheel", release, label)] = constants
    return served


def test_every_cuda_build_the_mirror_serves_reports_the_real_builds_facts(root):
    served = _served_torch(root)
    cuda_builds = {key: value for key, value in served.items() if value["CUDA"] is not None}
    assert cuda_builds, "the mirror serves no CUDA build of torch"
    for (source, release, variant), constants in cuda_builds.items():
        real = real_build("wheel" if source == "pypi" else source, release, variant)
        assert constants["CUDA"] == real.cuda, (source, release, variant)
        assert constants["ARCH_LIST"] == list(real.arch_list), (source, release, variant)
    # Every recorded build is served (no row the lab does not use), and CPU builds have none.
    keys = {("wheel" if s == "pypi" else s, r, v) for s, r, v in cuda_builds}
    assert keys == {(b.source, b.torch, b.variant) for b in BUILDS}
    assert all(v["ARCH_LIST"] == [] for k, v in served.items() if k[2] == "cpu")


def _wrong(compat, **arch: str):
    """compat with the arch lists of some variants replaced, everywhere a route reads them."""
    lists = {variant: ArchList.parse(text) for variant, text in arch.items()}
    releases = {}
    for line, release in compat.releases.items():
        conda = release.conda_pytorch
        if conda is not None:
            conda = replace(conda, arch={**conda.arch, **{v: a for v, a in lists.items()
                                                           if v in conda.arch}})  # fmt: skip
        variants = {**release.variants, **{v: a for v, a in lists.items() if v in release.variants}}
        releases[line] = replace(release, variants=variants, conda_pytorch=conda)
    forge = {f"{v[2:-1]}.{v[-1]}": a for v, a in lists.items()}
    channel = replace(compat.conda_forge, arch={**compat.conda_forge.arch, **forge})
    return replace(compat, releases=releases, conda_forge=channel)


def test_the_stand_in_does_not_take_its_arch_lists_from_releases_yaml(monkeypatch):
    """With every served variant's arch list wrong in compat, the builds are unchanged."""
    bogus = "3.5"
    wrong = _wrong(COMPAT, **dict.fromkeys(("cu118", "cu121", "cu126", "cu128", "cu129"), bogus))
    monkeypatch.setattr(mirror_content, "load_compat", lambda: wrong)
    for build in BUILDS:
        served = torch_build(build.torch, build.variant, label=False, source=build.source)
        assert served.facts("torch")["ARCH_LIST"] == list(build.arch_list), build
        assert served.cuda == build.cuda


# ---------------------------------------------------------------- the plan against the builds

PROFILES = load_profiles()
# The routes of the lab's mirror: what a deploy asks for (with the deploy's driver policy), and
# the source of the builds it gets.
POLICY = Settings().driver_policy
ROUTES = {
    "pip 2.9.1": (
        Request(torch="2.9.1", installer="pip", python="3.11", driver_policy=POLICY),
        "wheel",
    ),
    "conda-forge 2.7.1": (
        Request(torch="2.7.1", installer="conda", python="3.11", conda_channel="conda-forge",
                driver_policy=POLICY),
        "forge",
    ),
    "pytorch channel 2.3.1": (
        Request(torch="2.3.1", installer="conda", python="3.11", conda_channel="pytorch",
                driver_policy=POLICY),
        "conda",
    ),
}  # fmt: skip


def _facts(profile: Profile) -> HostFacts:
    """What the deploy reads on a host of this profile: its driver and GPUs, with the compute
    capability nvidia-smi reports there."""
    facts = profile.facts
    gpus = tuple(
        Gpu(gpu.index, gpu.name, gpu.uuid, gpu.memory_mib,
            ComputeCapability.parse(gpu.capability), "reported", gpu.mig)
        for gpu in facts.gpus
    )  # fmt: skip
    report = SmiReport(facts.driver, facts.cuda, gpus, "xml")
    return HostFacts(platform="linux-64", glibc="2.36", python="3.11", nvidia_smi=report)


def _probe_on(profile: Profile, build, tmp_path: Path) -> dict:
    """The real probe script, with the served build's stand-in torch, on this profile's GPUs."""
    site = tmp_path / "site"
    for path, data in payload(build, "torch").items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes(data)
    host_file = tmp_path / "host.json"
    host_file.write_text(json.dumps(host_json(profile, "lab")))
    done = subprocess.run(
        [sys.executable, "-"],
        input=PROBE_SOURCE,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(site), "LABTORCH_SIM_HOST_FILE": str(host_file)},
        timeout=60,
        check=False,
    )
    result = probe_result(done.stdout.splitlines())
    assert result is not None, done.stderr
    return result


def lab_check(compat, tmp_path: Path) -> tuple[set, list[tuple[str, str, list[str]]]]:
    """Plan each GPU host of the default lab on each route, with ``compat``; where the plan is a
    CUDA build the mirror serves, probe that build on the host and judge it as the deploy does.
    The builds probed, and the failures: (profile, route, the verdict's failures)."""
    failures, probed = [], set()
    for name in PROFILES.lab:
        profile = PROFILES.profiles[name]
        if profile.facts is None or profile.failure is not None:
            continue
        for route, (request, source) in ROUTES.items():
            plan = plan_for_host(_facts(profile), request, compat, load_catalog())
            if plan.refused or plan.cuda is None:
                continue
            try:
                real_build(source, plan.torch_release, plan.variant)
            except KeyError:
                continue  # the lab's mirror does not serve this build
            release = compat.find_release(plan.torch_release)[0]
            label = source == "wheel" and plan.variant != release.pypi_default
            build = torch_build(plan.torch_release, plan.variant, label=label, source=source)
            probe = _probe_on(profile, build, tmp_path / f"{name}-{route.replace(' ', '-')}")
            expected = Expectation(
                torch=plan.torch.version if source == "wheel" else plan.torch_release,
                variant=plan.variant,
                cuda=plan.cuda,
                gpus=len(profile.facts.gpus),
                mig_gpus=tuple(g.index for g in profile.facts.gpus if g.mig),
            )
            verdict = judge(probe, expected)
            probed.add((source, plan.torch_release, plan.variant))
            if not verdict.passed:
                failures.append((name, route, verdict.failures))
    return probed, failures


def test_every_lab_plan_runs_on_the_real_builds(tmp_path):
    probed, failures = lab_check(COMPAT, tmp_path)
    assert failures == []
    assert probed == {(b.source, b.torch, b.variant) for b in BUILDS}  # each build on a GPU


def test_a_wrong_arch_list_in_releases_yaml_fails_on_the_lab(tmp_path):
    """releases.yaml claiming that 2.9's cu128 has Pascal kernels (it has not: sm_70 and up):
    the planner gives the GTX 1080 Ti (driver 570, CUDA 12.8) cu128 instead of cu126, and the
    real build fails it there. With the stand-in built from releases.yaml, as before, the same
    wrong list would have passed."""
    wrong = _wrong(COMPAT, cu128="6.0;7.0;7.5;8.0;8.6;9.0;10.0;12.0")
    _, failures = lab_check(wrong, tmp_path)
    assert [(name, route) for name, route, _ in failures] == [("pascal", "pip 2.9.1")]
    problems = " ".join(failures[0][2])
    assert "GPU 0 NVIDIA GeForce GTX 1080 Ti (sm_61): the build's kernels (sm_70" in problems
    assert "no kernel image is available for execution on the device" in problems
