"""The lab's packages with the dependency shapes of the real ones (issue 17), end to end: the
real pyinfra CLI over real SSH against a lab of the default 9 hosts, in order.

The first converge gives each route the dependencies its real packages pull, each from where it
lives: a pip host's wheels from the mirror's PyPI and the variant's wheel page, a conda-forge
CUDA host's CUDA runtime libraries from conda-forge, a pytorch-channel host's ``pytorch-cuda``
and ``cuda-*`` from the nvidia channel. A dependency installed from outside the mirror is named
in the report and installed again on that host alone, and the rerun changes nothing. An nvidia
channel emptied on the mirror fails the pytorch-channel hosts with conda's own "nothing provides"
and no other host.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from labhelpers import deploy as run_deploy
from labhelpers import env_urls, mirror_url, must, not_from_the_mirror, running_lab, ssh

from labtorch_sim.mirror import read_mirror

ENV = "/opt/conda/envs/torch"
VENV = "/opt/labtorch/venvs/torch"
SITE = "lib/python3.11/site-packages"
# Where the hosts fail in the default lab: the driver that is not loaded.
FAILED = ["lab08"]
PYTORCH_CHANNEL_HOSTS = ["lab03", "lab06"]
NVIDIA = "anaconda-extra/cloud/nvidia"


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory, "dependencies-lab") as state_dir:
        yield state_dir


def deploy(lab_dir: Path, *extra: str) -> tuple[dict, dict[str, dict]]:
    """The deploy: pyinfra's results and the report's record of each host."""
    _, results, stderr = run_deploy(lab_dir, lab_dir, *extra)
    assert results is not None, stderr
    report = json.loads((lab_dir / "report.json").read_text())
    return results, {record["name"]: record for record in report["hosts"]}


def changed_hosts(results: dict) -> set[str]:
    return {name for op in results["operations"] for name in op["success"]}


def conda_urls(lab_dir: Path, host: str) -> dict[str, str]:
    """Each package of the host's conda env -> the URL conda installed it from."""
    script = (
        "import glob, json; print(json.dumps({r['name']: r['url'] for r in "
        f"(json.load(open(p)) for p in glob.glob('{ENV}/conda-meta/*.json'))}}))"
    )
    return json.loads(must(ssh(lab_dir, host, f'python3 -c "{script}"')))


def venv_urls(lab_dir: Path, host: str) -> dict[str, str]:
    """Each distribution of the host's venv -> the URL pip installed it from (direct_url.json:
    the lab installs from a lock, by URL)."""
    script = (
        "import glob, json, os; print(json.dumps({os.path.basename(os.path.dirname(p)).split('-')"
        f"[0].lower(): json.load(open(p))['url'] for p in glob.glob('{VENV}/{SITE}/"
        "*.dist-info/direct_url.json')}))"
    )
    return json.loads(must(ssh(lab_dir, host, f'python3 -c "{script}"')))


def test_the_first_converge_installs_every_route_with_its_real_dependencies(lab_dir):
    results, hosts = deploy(lab_dir)
    assert sorted(results["failed_hosts"]) == FAILED
    mirror = mirror_url(lab_dir)
    # conda-forge's CUDA 12.6 build (the H100 on 570): the CUDA runtime libraries, from conda-forge.
    forge = conda_urls(lab_dir, "lab01")
    for name in ("cuda-cudart", "cuda-nvrtc", "libcublas", "libcufft", "libcusparse", "cudnn",
                 "nccl", "triton", "sympy", "jinja2", "filelock", "optree"):  # fmt: skip
        assert forge[name].startswith(f"{mirror}/anaconda/cloud/conda-forge/"), name
    assert "/cuda-cudart-12.6.77-" in forge["cuda-cudart"]
    # The pytorch channel's 12.1 build (the V100S): pytorch-cuda, and its cuda-* from nvidia.
    article = conda_urls(lab_dir, "lab03")
    assert article["pytorch-cuda"].startswith(f"{mirror}/anaconda/cloud/pytorch/")
    nvidia = {name: url for name, url in article.items() if "/cloud/nvidia/" in url}
    assert {"cuda-cudart", "cuda-runtime", "cuda-libraries", "libcublas", "libnvjitlink"} <= set(
        nvidia
    )
    assert "/cuda-cudart-12.1.105-" in nvidia["cuda-cudart"]
    # The pip CPU host: the pure-Python set from the mirror, and no fallback noted.
    wheels = venv_urls(lab_dir, "lab07")
    assert {"sympy", "mpmath", "networkx", "jinja2", "markupsafe", "filelock", "fsspec",
            "typing_extensions"} <= set(wheels)  # fmt: skip
    assert all(url.startswith(f"{mirror}/") and "/fallback/" not in url for url in wheels.values())
    notes = [n for record in hosts.values() if record["probe"] for n in record["probe"]["notes"]]
    assert not [note for note in notes if "fallback" in note]


def test_a_pip_gpu_host_holds_the_nvidia_wheels_from_the_mirrors_pypi(lab_dir):
    """The H100 on the pip route gets PyPI's default torch (cu128, unlabelled): its nvidia-*-cu12
    wheels and triton, at the versions torch pins, and the pure-Python set, all from the
    mirror's PyPI."""
    results, hosts = deploy(lab_dir, "--limit", "lab01", "--data", "torch_installer=pip",
                            "--data", "torch_release=2.9.1")  # fmt: skip
    assert results["failed_hosts"] == [] and hosts["lab01"]["status"] == "ok"
    wheels = venv_urls(lab_dir, "lab01")
    pypi = f"{mirror_url(lab_dir)}/pypi/web/packages/"
    nvidia = {name: url for name, url in wheels.items() if name.startswith("nvidia_")}
    assert len(nvidia) == 15
    assert nvidia["nvidia_cublas_cu12"] == (
        f"{pypi}nvidia_cublas_cu12-12.8.4.1-py3-none-manylinux_2_27_x86_64.whl"
    )
    for name in (*nvidia, "triton", "sympy", "jinja2", "typing_extensions", "torch"):
        assert wheels[name].startswith(pypi), name
    assert not hosts["lab01"]["probe"]["notes"]


UPSTREAM_CONDA = "https://conda.anaconda.org/conda-forge/noarch/"
UPSTREAM_WHEEL = "https://files.pythonhosted.org/packages/a1/b2/"


def test_a_dependency_from_outside_the_mirror_is_named_and_installed_again_on_that_host(lab_dir):
    """lab02's filelock (conda-forge) and lab07's sympy (a wheel) say they came from upstream:
    the report names each on its host, the run installs them again from the mirror there alone,
    and the rerun changes nothing."""
    conda_record = f"{ENV}/conda-meta/filelock-*.json"
    must(ssh(lab_dir, "lab02", "python3 -c \"import glob, json; p = glob.glob('" + conda_record +
             "')[0]; r = json.load(open(p)); r['url'] = '" + UPSTREAM_CONDA +
             "' + r['fn']; json.dump(r, open(p, 'w'))\""))  # fmt: skip
    wheel_record = f"{VENV}/{SITE}/sympy-*.dist-info/direct_url.json"
    must(ssh(lab_dir, "lab07", "python3 -c \"import glob, json; p = glob.glob('" + wheel_record +
             "')[0]; r = json.load(open(p)); r['url'] = '" + UPSTREAM_WHEEL +
             "' + r['url'].rsplit('/', 1)[1]; json.dump(r, open(p, 'w'))\""))  # fmt: skip
    results, hosts = deploy(lab_dir)
    assert changed_hosts(results) == {"lab02", "lab07"}
    assert sorted(results["failed_hosts"]) == FAILED
    [conda_note] = hosts["lab02"]["notes"]
    assert conda_note.startswith("filelock-3.18.0-pyhd8ed1ab_0.conda came from " + UPSTREAM_CONDA)
    assert conda_note.endswith(": installed again from the mirror")
    [wheel_note] = hosts["lab07"]["notes"]
    assert wheel_note.startswith("sympy-1.14.0-py3-none-any.whl came from " + UPSTREAM_WHEEL)
    mirror = mirror_url(lab_dir)
    assert conda_urls(lab_dir, "lab02")["filelock"].startswith(f"{mirror}/anaconda/cloud/")
    assert venv_urls(lab_dir, "lab07")["sympy"].startswith(f"{mirror}/")
    assert all(hosts[h]["status"] == "ok" for h in ("lab02", "lab07"))
    results, hosts = deploy(lab_dir)
    assert changed_hosts(results) == set()
    assert not hosts["lab02"]["notes"] and not hosts["lab07"]["notes"]


def test_an_nvidia_channel_emptied_on_the_mirror_fails_the_pytorch_channel_hosts_alone(lab_dir):
    """The mirror drops the nvidia channel's packages: a host that must solve pytorch-cuda gets
    conda's own error, as the article's users did, in the report; the other hosts are fine. The
    channel back, the next run converges them."""
    root = read_mirror(lab_dir / "mirror").root
    saved = {}
    for subdir in ("linux-64", "noarch"):
        repodata = root / NVIDIA / subdir / "repodata.json"
        saved[repodata] = repodata.read_bytes()
        empty = {"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}}
        repodata.write_text(json.dumps(empty))
    try:
        for host in PYTORCH_CHANNEL_HOSTS:
            must(ssh(lab_dir, host, "/opt/conda/bin/conda remove -n torch --all -y -q"))
        results, hosts = deploy(lab_dir, "--data", "torch_lock=off")
    finally:
        for repodata, data in saved.items():
            repodata.write_bytes(data)
    assert sorted(results["failed_hosts"]) == sorted([*FAILED, *PYTORCH_CHANNEL_HOSTS])
    for host in PYTORCH_CHANNEL_HOSTS:
        assert "nothing provides" in hosts[host]["reason"], hosts[host]["reason"]
        assert "needed by pytorch-cuda-" in hosts[host]["reason"]
    assert all(hosts[h]["status"] == "ok" for h in hosts if h not in results["failed_hosts"])
    results, _ = deploy(lab_dir)
    assert sorted(results["failed_hosts"]) == FAILED


def test_without_a_lock_one_run_repairs_a_missing_pin_and_a_dependency_from_elsewhere(lab_dir):
    """lab07 (pip, no lock: each host solves against the mirror's index) lost torch, and its
    sympy says it came from upstream: one run installs torch and installs sympy again from the
    mirror, every package of the venv then names the mirror, and the rerun changes nothing."""
    wheel_record = f"{VENV}/{SITE}/sympy-*.dist-info/direct_url.json"
    must(ssh(lab_dir, "lab07", f"{VENV}/bin/python -m pip uninstall -q -y torch"))
    must(ssh(lab_dir, "lab07", "python3 -c \"import glob, json; p = glob.glob('" + wheel_record +
             "')[0]; r = json.load(open(p)); r['url'] = '" + UPSTREAM_WHEEL +
             "' + r['url'].rsplit('/', 1)[1]; json.dump(r, open(p, 'w'))\""))  # fmt: skip
    off = ("--limit", "lab07", "--data", "torch_lock=off")
    results, hosts = deploy(lab_dir, *off)
    assert changed_hosts(results) == {"lab07"}
    assert hosts["lab07"]["status"] == "ok", hosts["lab07"]
    assert any(
        note.startswith("sympy came from " + UPSTREAM_WHEEL) for note in hosts["lab07"]["notes"]
    )
    assert not_from_the_mirror(lab_dir, ["lab07"]) == {}
    # sympy's URL is known again, from pip's install report: the mirror's
    assert [url for _, url in env_urls(lab_dir, "lab07") if "/sympy-" in url]
    results, _ = deploy(lab_dir, *off)
    assert changed_hosts(results) == set()
