"""Locking on the controller against the simulated mirror: rattler's conda solve with the
class's virtual packages, uv's pip solve for the class's target, each file's hash as the mirror
serves it, and every request marked as the controller's (labtorch.locking)."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest
from test_rules import COMPAT, GTX1080TI, H100, host

from labtorch.data.mirrors import load_catalog, tuna_layout_mirror
from labtorch.locking import store
from labtorch.locking.pip import packages_from_pylock, target_tags
from labtorch.locking.solve import USER_AGENT, Job, solve
from labtorch.rules.locks import MD5, SHA256, lock_class, parse_explicit, usable
from labtorch.rules.model import Request
from labtorch.rules.plan import plan_for_host
from labtorch_sim.mirror import read_log


def _class(mirror_url: str, facts, torch: str, **request):
    catalog = load_catalog().with_mirror(
        tuna_layout_mirror("site", mirror_url, f"{mirror_url}/pytorch-wheels/{{variant}}/")
    )
    plan = plan_for_host(
        facts, Request(torch=torch, mirror="site", wheel_mirror="site", python="3.11", **request),
        COMPAT, catalog,
    )  # fmt: skip
    return lock_class(plan)


def _sha256(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return hashlib.sha256(response.read()).hexdigest()


@pytest.fixture(scope="module")
def url(mirror) -> str:
    return mirror[0].url


def test_a_conda_class_is_solved_once_with_its_cuda_and_every_file_checks(url, mirror):
    before = len(read_log(mirror[1]))
    lock = _class(url, host("570.86", "12.8", H100), "2.7.1")
    entry = solve(Job(lock, ("lab01", "lab04"), ("2.36", "2.31"), "site"))
    packages = {p.name: p for p in entry.packages_for()}
    assert packages["pytorch"].build.startswith("cuda126_generic_py311_")
    assert packages["cuda-version"].version == "12.6"
    assert {"python", "pip", "torchvision", "torchaudio"} <= set(packages)
    assert entry.glibc == "2.31" and ("__cuda", "12.6", "0") in entry.virtual
    for package in packages.values():
        assert package.url.startswith(f"{url}/anaconda/cloud/conda-forge/")
        assert _sha256(package.url) == package.sha256
    sha = parse_explicit(entry.files[f"{lock.id}/explicit-sha256.txt"])
    md5 = parse_explicit(entry.files[f"{lock.id}/explicit-md5.txt"])
    assert {kind for _, kind, _ in sha} == {SHA256} and {kind for _, kind, _ in md5} == {MD5}
    requests = read_log(mirror[1])[before:]
    solving = [r for r in requests if r["user_agent"] == USER_AGENT]
    assert {r["path"].rsplit("/", 2)[-2] for r in solving} == {"linux-64", "noarch"}
    assert all(r["path"].endswith("/repodata.json") for r in solving)


def test_without_cuda_the_solve_takes_the_cpu_build(url):
    entry = solve(Job(_class(url, host(), "2.7.1"), ("lab07",), ("2.36",), "site"))
    pytorch = next(p for p in entry.packages_for() if p.name == "pytorch")
    assert pytorch.build.startswith("cpu_")
    assert not any(name == "__cuda" for name, _, _ in entry.virtual)


def test_a_pip_class_is_resolved_by_uv_for_its_target_with_the_mirrors_hashes(url):
    lock = _class(url, host("580.65", "13.0", GTX1080TI, python="3.11"), "2.9.1", installer="pip")
    entry = solve(Job(lock, ("lab07",), ("2.36",), "site"))
    assert entry.target == "x86_64-manylinux_2_36"
    packages = {p.name: p for p in entry.packages_for()}
    assert packages["torch"].version == "2.9.1+cu126"
    assert packages["torch"].url.startswith(f"{url}/pytorch-wheels/cu126/")
    assert {"nvidia-cuda-runtime-cu12", "triton", "torchvision", "torchaudio"} <= set(packages)
    for package in packages.values():
        assert _sha256(package.url) == package.sha256


def test_the_lock_directory_keeps_classes_and_drops_files_of_dropped_ones(url, tmp_path):
    cpu = solve(Job(_class(url, host(), "2.7.1"), ("lab07",), ("2.36",), "site"))
    cuda = solve(Job(_class(url, host("570.86", "12.8", H100), "2.7.1"), ("lab01",), (), "site"))
    store.merge(tmp_path, [cpu, cuda])
    assert set(store.read(tmp_path)) == {cpu.id, cuda.id}
    assert usable(store.read(tmp_path)[cpu.id], cpu.lock, "2.36") is None
    store.merge(tmp_path, [cuda], keep=lambda entry: False)
    assert set(store.read(tmp_path)) == {cuda.id}
    assert not (tmp_path / cpu.id).exists()


_WHEELS = [
    ("torch-2.9.1-cp311-cp311-manylinux_2_28_x86_64.whl", "a"),
    ("torch-2.9.1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "b"),
    ("torch-2.9.1-cp312-cp312-manylinux_2_28_x86_64.whl", "c"),
    ("torch-2.9.1-cp311-none-macosx_11_0_arm64.whl", "d"),
]
PYLOCK = (
    'lock-version = "1.0"\n[[packages]]\nname = "Torch"\nversion = "2.9.1"\nwheels = [\n'
    + "".join(f'  {{ url = "https://m/{f}", hashes = {{ sha256 = "{h * 64}" }} }},\n'
              for f, h in _WHEELS)
    + ']\n[[packages]]\nname = "only-windows"\nversion = "1"\n'
    'marker = "sys_platform == \'win32\'"\n'
    'wheels = [{ url = "https://m/only_windows-1-py3-none-any.whl", hashes = { sha256 = "'
    + "e" * 64 + '" } }]\n'
)  # fmt: skip


@pytest.mark.parametrize(
    ("target", "chosen"),
    [
        ("x86_64-manylinux_2_36", "a" * 64),  # the newest manylinux the host runs
        ("x86_64-manylinux_2_17", "b" * 64),  # an old glibc takes the manylinux2014 wheel
    ],
)
def test_of_each_package_the_wheel_the_target_installs_is_locked(target, chosen):
    (torch,) = packages_from_pylock(PYLOCK, target, "3.11")
    assert (torch.name, torch.sha256) == ("torch", chosen)
    assert target_tags(target, "3.11")[0].interpreter == "cp311"
