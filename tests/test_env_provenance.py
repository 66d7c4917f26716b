"""Provenance of a whole env, dependencies included (issue 17): which packages came from outside
the mirror, what the env's diff and its lock's diff make of them, and where a venv's URLs are
read from (pure)."""

from __future__ import annotations

import pytest
from test_locks import PYTORCH, TORCH_WHEEL, TRITON, M

from labtorch.facts.host_state import InstalledPackage, parse_dist_info
from labtorch.rules.envdiff import OK, REPAIR, env_diff
from labtorch.rules.locks import lock_diff
from labtorch.rules.model import PackagePin
from labtorch.rules.provenance import channel_of, foreign_packages

MIRROR = "https://m/anaconda/cloud/conda-forge"
UPSTREAM = "https://conda.anaconda.org/conda-forge"


@pytest.mark.parametrize(
    ("url", "channel"),
    [
        (f"{UPSTREAM}/noarch/filelock-3.18.0-pyhd8ed1ab_0.conda", "conda-forge"),
        ("https://conda.anaconda.org/nvidia/linux-64/cuda-cudart-12.1.105-0.tar.bz2", "nvidia"),
        ("https://m/anaconda/pkgs/main/linux-64/python-3.11.2-h_0.tar.bz2", "main"),
        ("https://m/x/linux-aarch64/a-1-0.conda", "x"),
        ("file:///tmp/libcublas-12.6.4.1-h_0.conda", None),
        ("https://files.pythonhosted.org/packages/filelock-3.20.0-py3-none-any.whl", None),
    ],
)
def test_the_channel_a_package_url_names(url, channel):
    assert channel_of(url) == channel


def _pkg(name: str, url: str | None, version: str = "1.0", build: str | None = "h_0"):
    return InstalledPackage(name, version, build, url)


@pytest.mark.parametrize(
    ("urls", "foreign"),
    [
        ({"pytorch": f"{MIRROR}/linux-64/p.conda", "filelock": f"{MIRROR}/noarch/f.conda"}, []),
        ({"pytorch": f"{MIRROR}/linux-64/p.conda", "filelock": f"{UPSTREAM}/noarch/f.conda"},
         ["filelock"]),
        # A name that only starts like the mirror's channel is not under it.
        ({"sympy": f"{MIRROR}-old/noarch/s.conda", "zlib": "file:///tmp/z.conda"},
         ["sympy", "zlib"]),
        # No recorded URL (a pip index install): not judged.
        ({"jinja2": None}, []),
    ],
)  # fmt: skip
def test_foreign_packages_are_those_outside_the_accepted_prefixes(urls, foreign):
    installed = {name: _pkg(name, url) for name, url in urls.items()}
    assert [p.name for p in foreign_packages(installed, [MIRROR])] == foreign


PIN = PackagePin("pytorch", "2.7.1", "cuda126*", "conda-forge", MIRROR)
TORCH = _pkg("pytorch", f"{MIRROR}/linux-64/pytorch.conda", "2.7.1", "cuda126_generic_0")


@pytest.mark.parametrize(
    ("dependency", "accepted", "action", "reinstall"),
    [
        (_pkg("filelock", f"{MIRROR}/noarch/filelock.conda"), [MIRROR], OK, ()),
        (_pkg("filelock", f"{UPSTREAM}/noarch/filelock.conda"), [MIRROR], REPAIR, ("filelock",)),
        (_pkg("filelock", f"{UPSTREAM}/noarch/filelock.conda"), None, OK, ()),
        (_pkg("filelock", None), [MIRROR], OK, ()),
    ],
)  # fmt: skip
def test_a_dependency_from_elsewhere_is_reinstalled_like_a_pin(
    dependency, accepted, action, reinstall
):
    diff = env_diff([PIN], {"pytorch": TORCH, "filelock": dependency}, accepted)
    assert (diff.action, diff.reinstall) == (action, reinstall)
    assert diff.foreign == tuple(f"filelock came from {dependency.url}, not from the mirror"
                                 for _ in reinstall)  # fmt: skip


def test_a_wrong_pin_and_a_dependency_from_elsewhere_are_repaired_by_one_install():
    cpu = _pkg("pytorch", f"{MIRROR}/linux-64/cpu.conda", "2.7.1", "cpu_generic_0")
    elsewhere = _pkg("filelock", f"{UPSTREAM}/noarch/filelock.conda")
    diff = env_diff([PIN], {"pytorch": cpu, "filelock": elsewhere}, [MIRROR])
    line = f"filelock came from {UPSTREAM}/noarch/filelock.conda, not from the mirror"
    assert (diff.action, diff.reinstall, diff.foreign) == (REPAIR, ("filelock",), (line,))
    assert diff.problems == (
        "pytorch 2.7.1 cpu_generic_0 is installed, the plan wants pytorch 2.7.1 cuda126*",
        line,
    )


def test_a_wrong_pin_from_elsewhere_is_replaced_not_reinstalled():
    cpu = _pkg("pytorch", f"{UPSTREAM}/linux-64/cpu.conda", "2.7.1", "cpu_generic_0")
    diff = env_diff([PIN], {"pytorch": cpu}, [MIRROR])
    assert (diff.action, diff.reinstall, diff.foreign) == (REPAIR, (), ())


def test_a_variant_marker_goes_only_when_a_pin_is_wrong():
    """cpuonly blocks a switch to the CUDA build; an env whose pins hold is left its markers
    even when a dependency is reinstalled."""
    marker = _pkg("cpuonly", f"{MIRROR}/noarch/cpuonly.conda", "2.0", "0")
    cpu = _pkg("pytorch", f"{MIRROR}/linux-64/cpu.conda", "2.7.1", "cpu_generic_0")
    elsewhere = _pkg("filelock", f"{UPSTREAM}/noarch/filelock.conda")
    assert env_diff([PIN], {"pytorch": cpu, "cpuonly": marker}, [MIRROR]).remove == ("cpuonly",)
    kept = env_diff([PIN], {"pytorch": TORCH, "cpuonly": marker, "filelock": elsewhere}, [MIRROR])
    assert (kept.remove, kept.reinstall) == ((), ("filelock",))


def test_the_lock_names_each_file_from_elsewhere_for_the_report():
    moved = InstalledPackage(PYTORCH.name, PYTORCH.version, PYTORCH.build,
                             f"{UPSTREAM}/linux-64/{PYTORCH.filename}")  # fmt: skip
    diff = lock_diff([PYTORCH], {"pytorch": moved}, "conda")
    assert diff.install == ("pytorch",)
    assert diff.foreign == (
        f"{PYTORCH.filename} came from {UPSTREAM}/linux-64/{PYTORCH.filename}, not from the "
        "lock's mirror",
    )
    on_fallback = f"https://fallback/{M.split('://')[1]}/linux-64/{PYTORCH.filename}"
    kept = InstalledPackage(PYTORCH.name, PYTORCH.version, PYTORCH.build, on_fallback)
    assert lock_diff([PYTORCH], {"pytorch": kept}, "conda", [on_fallback]).action == OK


def test_a_venv_dependency_from_elsewhere_is_drift_from_its_lock():
    """A lock's venv records each wheel's URL (pip's direct_url.json): a dependency of the same
    version from upstream PyPI is installed again from the lock."""
    upstream = "https://files.pythonhosted.org/packages/triton-3.5.1.whl"
    venv = {
        "torch": InstalledPackage("torch", TORCH_WHEEL.version, None, TORCH_WHEEL.url),
        "triton": InstalledPackage("triton", TRITON.version, None, upstream),
    }
    diff = lock_diff([TORCH_WHEEL, TRITON], venv, "pip")
    assert (diff.action, diff.install) == (REPAIR, ("triton",))
    assert len(diff.foreign) == 1 and upstream in diff.foreign[0]


def test_a_venvs_urls_are_its_direct_url_records():
    site = "/v/lib/python3.11/site-packages"
    packages = parse_dist_info(
        [f"{site}/torch-2.9.1+cpu.dist-info", f"{site}/typing_extensions-4.15.0.dist-info"],
        [f'{site}/torch-2.9.1+cpu.dist-info/direct_url.json:"url": "https://m/t.whl"',
         "not a grep line"],
    )  # fmt: skip
    assert packages["torch"].url == "https://m/t.whl"
    assert packages["typing-extensions"].url is None


SITE = "/v/lib/python3.11/site-packages"
REPORTED = [
    '"url": "http://m/pypi/web/packages/ab/cd/nvidia_cublas_cu12-12.8.4.1-py3-none-manylinux_2_27_x86_64.whl"',
    '"url": "https://files.pythonhosted.org/packages/ef/01/sympy-1.14.0-py3-none-any.whl"',
    '"url": "http://m/pytorch-wheels/cpu/torch-2.9.1%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl"',
    '"url": "http://m/pypi/web/packages/aa/bb/MarkupSafe-3.0.2.tar.gz"',
    '"url": "git+https://example.org/repo.git"',
    "not a grep line",
]  # fmt: skip


@pytest.mark.parametrize(
    ("dist_info", "name", "url"),
    [
        # a wheel's file name says the distribution (normalised) and the version
        ("nvidia_cublas_cu12-12.8.4.1", "nvidia-cublas-cu12",
         "http://m/pypi/web/packages/ab/cd/nvidia_cublas_cu12-12.8.4.1-py3-none-manylinux_2_27_x86_64.whl"),
        ("sympy-1.14.0", "sympy", "https://files.pythonhosted.org/packages/ef/01/sympy-1.14.0-py3-none-any.whl"),
        # the local label is part of the version: +cpu's file is not the default build's
        ("torch-2.9.1+cpu", "torch",
         "http://m/pytorch-wheels/cpu/torch-2.9.1%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl"),
        ("torch-2.9.1", "torch", None),
        # an sdist names its distribution too
        ("MarkupSafe-3.0.2", "markupsafe", "http://m/pypi/web/packages/aa/bb/MarkupSafe-3.0.2.tar.gz"),
        # another version of a reported distribution, or one in no report: no URL known
        ("sympy-1.13.3", "sympy", None),
        ("six-1.16.0", "six", None),
    ],
)  # fmt: skip
def test_a_venvs_index_installs_take_their_url_from_pips_install_report(dist_info, name, url):
    packages = parse_dist_info([f"{SITE}/{dist_info}.dist-info"], [], REPORTED)
    assert packages[name].url == url


def test_direct_url_json_wins_over_the_install_report():
    """A lock's install records its URL in direct_url.json: the report of a later install that
    took the same file from elsewhere does not rewrite where the installed one came from."""
    lines = [f"{SITE}/torch-2.9.1+cpu.dist-info"]
    direct = [f'{SITE}/torch-2.9.1+cpu.dist-info/direct_url.json:"url": "http://m/lock/t.whl"']
    assert parse_dist_info(lines, direct, REPORTED)["torch"].url == "http://m/lock/t.whl"
