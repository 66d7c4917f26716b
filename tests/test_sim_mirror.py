"""The simulated mirror: TUNA's layout with the expected packages, served, logged and faulted."""

from __future__ import annotations

import bz2
import hashlib
import http.client
import io
import json
import re
import time
import zipfile
from email.message import Message
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urljoin, urlsplit
from urllib.request import Request, urlopen

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from rattler import BuildString, MatchSpec, PackageRecord

from labtorch.data.compat import cuda_of_variant, load_compat
from labtorch_sim.mirror import (
    MirrorProcess,
    read_log,
    read_mirror,
    set_fault,
    start_mirror,
    stop_mirror,
)
from labtorch_sim.mirror_content import STAMP, build_mirror_content

CHANNELS = [
    "anaconda/pkgs/main",
    "anaconda/pkgs/r",
    "anaconda/pkgs/msys2",
    "anaconda/cloud/pytorch",
    "anaconda/cloud/conda-forge",
    "anaconda-extra/cloud/nvidia",
    "anaconda/cloud/nvidia",
]
SUBDIRS = ["linux-64", "noarch"]
WHEEL_PAGES = ["cpu", "cu126", "cu128"]
USER_AGENT = "labtorch-test/1.0"


def fetch(url: str, method: str = "GET") -> tuple[int, Message, bytes]:
    """Status, headers and body, for error statuses too."""
    request = Request(url, method=method, headers={"User-Agent": USER_AGENT})
    try:
        with urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except HTTPError as error:
        return error.code, error.headers, error.read()


def hrefs(page: bytes) -> list[str]:
    return re.findall(r'href="([^"]+)"', page.decode())


def repodata(root: Path, channel: str, subdir: str) -> dict[str, dict]:
    """Every record of a subdir: ``.tar.bz2`` under ``packages``, ``.conda`` under
    ``packages.conda`` (conda-index's layout)."""
    data = json.loads((root / channel / subdir / "repodata.json").read_text())
    return {**data["packages"], **data["packages.conda"]}


# ---- content ---------------------------------------------------------------------------------


def test_channels_hold_the_real_names_versions_and_build_strings(root: Path) -> None:
    found = {
        channel: sorted(name for subdir in SUBDIRS for name in repodata(root, channel, subdir))
        for channel in CHANNELS
    }
    assert found["anaconda/pkgs/main"] == [
        "pip-23.2.1-pyh_sim_0.tar.bz2",
        "python-3.11.2-h_sim_0.tar.bz2",
    ]
    assert found["anaconda/cloud/pytorch"] == [
        "cpuonly-2.0-0.tar.bz2",
        "pytorch-2.3.1-py3.11_cpu_0.tar.bz2",
        "pytorch-2.3.1-py3.11_cuda11.8_cudnn8.7.0_0.tar.bz2",
        "pytorch-2.3.1-py3.11_cuda12.1_cudnn8.9.2_0.tar.bz2",
        "pytorch-cuda-11.8-h7e8668a_5.tar.bz2",
        "pytorch-cuda-12.1-ha16c6d3_5.tar.bz2",
        "pytorch-mutex-1.0-cpu.tar.bz2",
        "pytorch-mutex-1.0-cuda.tar.bz2",
        "torchaudio-2.3.1-py311_cpu.conda",
        "torchaudio-2.3.1-py311_cu118.conda",
        "torchaudio-2.3.1-py311_cu121.conda",
        "torchvision-0.18.1-py311_cpu.conda",
        "torchvision-0.18.1-py311_cu118.conda",
        "torchvision-0.18.1-py311_cu121.conda",
    ]
    assert found["anaconda/pkgs/r"] == found["anaconda/pkgs/msys2"] == []
    nvidia = [name.removesuffix("-0.tar.bz2") for name in found["anaconda-extra/cloud/nvidia"]]
    assert nvidia == [
        "cuda-cudart-11.8.89",
        "cuda-cudart-12.1.105",
        "cuda-cupti-11.8.87",
        "cuda-cupti-12.1.105",
        "cuda-libraries-11.8.0",
        "cuda-libraries-12.1.0",
        "cuda-nvrtc-11.8.89",
        "cuda-nvrtc-12.1.105",
        "cuda-nvtx-11.8.86",
        "cuda-nvtx-12.1.105",
        "cuda-opencl-12.4.127",
        "cuda-runtime-11.8.0",
        "cuda-runtime-12.1.0",
        "libcublas-11.11.3.6",
        "libcublas-12.1.0.26",
        "libcufft-10.9.0.58",
        "libcufft-11.0.2.4",
        "libcufile-1.9.0.20",
        "libcufile-1.9.1.3",
        "libcurand-10.3.5.119",
        "libcurand-10.3.5.147",
        "libcusolver-11.4.1.48",
        "libcusolver-11.4.4.55",
        "libcusparse-11.7.5.86",
        "libcusparse-12.0.2.55",
        "libnpp-11.8.0.86",
        "libnpp-12.0.2.50",
        "libnvjitlink-12.1.105",
        "libnvjpeg-11.9.0.86",
        "libnvjpeg-12.1.1.14",
    ]
    assert found["anaconda/cloud/nvidia"] == found["anaconda-extra/cloud/nvidia"]
    forge = sorted(
        re.sub(r"([-_])h[0-9a-f]{7}_", r"\1h#######_", name)
        for name in found["anaconda/cloud/conda-forge"]
    )
    # conda-forge's CUDA builds of 2.7.1 are those compat lists for linux-64.
    release, _ = load_compat().find_release("2.7.1")
    variants = release.conda_forge.variants["linux-64"]
    cudas = [variant.replace("cu", "cuda") for variant in variants]
    assert "cuda126" in cudas
    torch_family = ("cuda-version-", "pip-", "python-", "pytorch-", "torchaudio-", "torchvision-")
    assert [name for name in forge if not name.startswith(torch_family)] == sorted(
        f"{name}.conda" for name in FORGE_DEPENDENCIES
    )
    assert [name for name in forge if name.startswith(torch_family)] == sorted(
        [
            *(f"cuda-version-{cuda_of_variant(v)}-h#######_3.conda" for v in variants),
            "pip-23.2.1-pyh_sim_0.tar.bz2",
            "python-3.11.2-h_sim_0.tar.bz2",
            "pytorch-2.7.1-cpu_generic_py311_h#######_0.tar.bz2",
            *(f"pytorch-2.7.1-{cuda}_generic_py311_h#######_200.tar.bz2" for cuda in cudas),
            *(
                f"{name}-{kind}_py311_h#######_0.conda"
                for name in ("torchaudio-2.7.1", "torchvision-0.22.1")
                for kind in ("cpu", *cudas)
            ),
        ]
    )


# conda-forge's pytorch 2.7.1 run dependencies the mirror serves (data/dependency_shapes.yaml):
# the Python set, noarch, and the CUDA 12.6 and 12.9 libraries with cudnn, nccl and triton.
FORGE_DEPENDENCIES = (
    *(
        f"{name}-pyhd8ed1ab_0"
        for name in (
            "filelock-3.18.0", "fsspec-2025.5.1", "jinja2-3.1.6", "markupsafe-3.0.2",
            "mpmath-1.3.0", "networkx-3.5", "optree-0.16.0", "pybind11-2.13.6",
            "setuptools-80.9.0", "sympy-1.14.0", "typing_extensions-4.14.0",
        )
    ),
    *(
        f"{name}-h_sim_0"
        for name in (
            "cudnn-9.10.1.4", "nccl-2.26.5.1", "triton-3.3.1",
            "cuda-cudart-12.6.77", "cuda-cupti-12.6.80", "cuda-nvrtc-12.6.85", "cuda-nvtx-12.6.77",
            "libcublas-12.6.4.1", "libcufft-11.3.0.4", "libcufile-1.11.1.6", "libcurand-10.3.7.77",
            "libcusolver-11.7.1.2", "libcusparse-12.5.4.2",
            "cuda-cudart-12.9.79", "cuda-cupti-12.9.79", "cuda-nvrtc-12.9.86", "cuda-nvtx-12.9.79",
            "libcublas-12.9.1.4", "libcufft-11.4.1.4", "libcufile-1.14.1.1",
            "libcurand-10.3.10.19", "libcusolver-11.7.5.82", "libcusparse-12.5.10.65",
        )
    ),
)  # fmt: skip


def providers(records: dict[str, dict], dependency: str) -> list[dict]:
    """The records that satisfy one ``depends`` entry."""
    spec = MatchSpec(dependency, strict=False)
    return [
        r
        for r in records.values()
        if spec.matches(
            PackageRecord(r["name"], r["version"], BuildString(r["build"]), 0, r["subdir"])
        )
    ]


@pytest.mark.parametrize("kind", ["cpu", "cuda126", "cuda129"])
def test_conda_forge_pytorch_depends_on_its_run_requirements_all_in_the_channel(
    root: Path, kind: str
) -> None:
    """The pytorch output's run requirements of conda-forge/pytorch-cpu-feedstock 2.7.1, and for
    a CUDA build the CUDA libraries' run_exports: each met in conda-forge itself, as a
    conda-forge-only channel list must."""
    forge = {
        **repodata(root, "anaconda/cloud/conda-forge", "linux-64"),
        **repodata(root, "anaconda/cloud/conda-forge", "noarch"),
    }
    [pytorch] = [r for n, r in forge.items() if n.startswith(f"pytorch-2.7.1-{kind}_generic")]
    depends = pytorch["depends"]
    assert {"filelock", "jinja2", "networkx", "sympy >=1.13.3", "typing_extensions >=4.10.0",
            "optree >=0.13.0"} <= set(depends)  # fmt: skip
    cuda = {"cuda126": "12.6.77", "cuda129": "12.9.79"}.get(kind)
    if cuda:
        assert f"cuda-cudart >={cuda},<13.0a0" in depends
        assert {"cudnn >=9.10.1.4,<10.0a0", "nccl >=2.26.5.1,<3.0a0"} <= set(depends)
        assert sum(d.startswith(("cuda-", "libcu")) for d in depends) == 11
    else:
        assert not any(d.startswith(("__cuda", "cuda-", "libcu", "cudnn", "nccl")) for d in depends)
    for dependency in depends:
        if dependency.startswith(("__", "python ")):
            continue
        found = providers(forge, dependency)
        assert found, f"{kind}: nothing provides {dependency}"
        if dependency.startswith(("cuda-", "libcu")) and not dependency.startswith("cuda-version"):
            # Each component is tied to its CUDA minor, so the build's cuda-version picks it.
            pins = [d for r in found for d in r["depends"] if d.startswith("cuda-version ")]
            assert len(pins) == len(found), dependency
            assert f"cuda-version >={cuda[:4]},<" in " ".join(pins), dependency


def test_conda_records_carry_the_dependencies_that_pick_a_variant(root: Path) -> None:
    pytorch = repodata(root, "anaconda/cloud/pytorch", "linux-64")
    noarch = repodata(root, "anaconda/cloud/pytorch", "noarch")
    forge = repodata(root, "anaconda/cloud/conda-forge", "linux-64")
    cuda121 = pytorch["pytorch-2.3.1-py3.11_cuda12.1_cudnn8.9.2_0.tar.bz2"]
    assert cuda121["depends"] == [
        "python >=3.11,<3.12.0a0",
        "pytorch-mutex 1.0 cuda",
        "pytorch-cuda >=12.1,<12.2",
    ]
    assert "pytorch 2.3.1" in pytorch["torchvision-0.18.1-py311_cu121.conda"]["depends"]
    mutex = noarch["pytorch-mutex-1.0-cpu.tar.bz2"]
    assert (mutex["track_features"], mutex["build_number"]) == ("pytorch-cpu", 100)
    assert noarch["cpuonly-2.0-0.tar.bz2"]["depends"] == ["pytorch-mutex 1.0 cpu"]
    forge_cuda = next(r for name, r in forge.items() if name.startswith("pytorch-2.7.1-cuda126"))
    assert {"__cuda", "cuda-version >=12.6,<12.7"} <= set(forge_cuda["depends"])
    pip = repodata(root, "anaconda/pkgs/main", "noarch")["pip-23.2.1-pyh_sim_0.tar.bz2"]
    assert pip["depends"] == ["python >=3.11,<3.12.0a0"]


def test_pytorch_cuda_pulls_the_nvidia_channel_as_the_real_one_does(root: Path) -> None:
    """pytorch-cuda's dependencies and constraints as in pytorch/builder
    ``conda/pytorch-cuda/meta.yaml`` (build 5, linux-64); each is met by the nvidia channel's
    package of the same CUDA version, and by none of the other."""
    pytorch = repodata(root, "anaconda/cloud/pytorch", "linux-64")
    nvidia = repodata(root, "anaconda-extra/cloud/nvidia", "linux-64")
    cuda121 = pytorch["pytorch-cuda-12.1-ha16c6d3_5.tar.bz2"]
    assert (cuda121["subdir"], cuda121["build_number"]) == ("linux-64", 5)
    assert "cuda-cudart >=12.1,<12.2" in cuda121["depends"]
    assert "libnvjitlink >=12.1.105,<12.2.0" in cuda121["depends"]
    assert "libcublas >=12.1.0.26,<12.1.3.1" in cuda121["depends"]
    cuda118 = pytorch["pytorch-cuda-11.8-h7e8668a_5.tar.bz2"]
    assert "libcufft >=10.9.0.58,<11.0.0.21" in cuda118["depends"]
    assert not any(d.startswith("libnvjitlink") for d in cuda118["depends"])
    for record, line in ((cuda121, "12.1"), (cuda118, "11.8")):
        assert len(record["depends"]) == (13 if line == "12.1" else 12)
        for dependency in record["depends"]:
            found = providers(nvidia, dependency)
            assert len(found) == 1, dependency
            assert found[0]["version"].startswith(
                {"12.1": ("12.1", "12.0", "11.0", "11.4"), "11.8": ("11.", "10.")}[line]
            ), dependency
    runtime = nvidia["cuda-runtime-12.1.0-0.tar.bz2"]
    assert runtime["depends"] == ["cuda-libraries 12.1.0"]
    libraries = nvidia["cuda-libraries-12.1.0-0.tar.bz2"]
    assert "cuda-cudart 12.1.105" in libraries["depends"]
    assert "cuda-opencl 12.4.127" in libraries["depends"]


def test_a_second_build_of_the_same_content_changes_nothing(root: Path) -> None:
    stamp = (root / STAMP).stat().st_mtime_ns
    started = time.monotonic()
    build_mirror_content(root)
    assert time.monotonic() - started < 1.0
    assert (root / STAMP).stat().st_mtime_ns == stamp


def test_a_stale_stamp_rebuilds_the_same_bytes(root: Path) -> None:
    """Content whose stamp does not match is rewritten, and builds are reproducible."""
    repodata_file = root / "anaconda/cloud/pytorch/linux-64/repodata.json"
    before = repodata_file.read_bytes()
    wheel = next((root / "pytorch-wheels" / "cu126").glob("torch-*.whl"))
    wheel.write_bytes(b"damaged")
    (root / STAMP).write_text('{"digest": "old"}')
    build_mirror_content(root)
    assert zipfile.is_zipfile(wheel)
    assert repodata_file.read_bytes() == before


# ---- serving ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("subdir", SUBDIRS)
def test_every_channel_subdir_has_repodata(mirror, channel: str, subdir: str) -> None:
    process, _ = mirror
    status, headers, body = fetch(f"{process.url}/{channel}/{subdir}/repodata.json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["info"]["subdir"] == subdir


def test_conda_packages_are_served_with_the_hash_repodata_gives(mirror, root: Path) -> None:
    process, _ = mirror
    channel = "anaconda/cloud/pytorch/linux-64"
    name, record = next(iter(repodata(root, "anaconda/cloud/pytorch", "linux-64").items()))
    status, headers, body = fetch(f"{process.url}/{channel}/{name}")
    assert status == 200
    assert headers["Content-Type"] == "application/x-bzip2"
    assert hashlib.sha256(body).hexdigest() == record["sha256"]


def test_conda_format_packages_are_served_for_part_of_the_set(mirror, root: Path) -> None:
    """TUNA serves ``.conda`` and ``.tar.bz2`` files, each listed in repodata (``.conda`` under
    ``packages.conda``; mirrors.md §2.4); the lab's channels hold both."""
    process, _ = mirror
    data = json.loads((root / "anaconda/cloud/pytorch/linux-64/repodata.json").read_text())
    assert data["packages"] and data["packages.conda"]
    name, record = next(iter(data["packages.conda"].items()))
    assert name.endswith(".conda")
    status, headers, body = fetch(f"{process.url}/anaconda/cloud/pytorch/linux-64/{name}")
    assert (status, headers["Content-Type"]) == (200, "application/octet-stream")
    assert (hashlib.sha256(body).hexdigest(), len(body)) == (record["sha256"], record["size"])
    with zipfile.ZipFile(io.BytesIO(body)) as package:
        stem = name.removesuffix(".conda")
        assert package.namelist() == [
            "metadata.json",
            f"pkg-{stem}.tar.zst",
            f"info-{stem}.tar.zst",
        ]
        assert json.loads(package.read("metadata.json")) == {"conda_pkg_format_version": 2}


@pytest.mark.parametrize("channel", CHANNELS)
def test_the_index_files_real_conda_asks_for_are_answered_as_tuna_does(
    mirror, channel: str
) -> None:
    """Real conda asks, per subdir, for ``current_repodata.json`` first (classic solver) and
    ``repodata.json.zst`` before ``repodata.json`` (conda-cli.md §6 pitfall 4), and takes a 404
    as "not there" and falls back. TUNA's sync copies ``repodata.json`` and
    ``repodata.json.bz2`` always, ``.zst`` and ``current_repodata.json`` only where upstream has
    them (tuna/tunasync-scripts ``anaconda.py`` ``sync_repo``); these channels have neither."""
    process, _ = mirror
    for subdir in SUBDIRS:
        base = f"{process.url}/{channel}/{subdir}"
        status, _, plain = fetch(f"{base}/repodata.json")
        assert status == 200
        status, headers, packed = fetch(f"{base}/repodata.json.bz2")
        assert (status, headers["Content-Type"]) == (200, "application/x-bzip2")
        assert bz2.decompress(packed) == plain
        for missing in ("current_repodata.json", "repodata.json.zst"):
            assert fetch(f"{base}/{missing}")[0] == 404, missing
            assert fetch(f"{base}/{missing}", method="HEAD")[0] == 404, missing


def test_the_pep_503_index_links_each_project_and_its_files_by_relative_path(mirror) -> None:
    process, _ = mirror
    simple = f"{process.url}/pypi/web/simple/"
    _, _, index = fetch(simple)
    projects = hrefs(index)
    assert {"torch/", "torchvision/", "torchaudio/", "nvidia-cuda-runtime-cu12/", "pip/",
            "sympy/", "typing-extensions/", "markupsafe/"} <= set(projects)  # fmt: skip
    for project in projects:
        page_url = urljoin(simple, project)
        _, _, page = fetch(page_url)
        for href in hrefs(page):
            assert href.startswith("../../packages/")
            file_url, _, digest = urljoin(page_url, href).partition("#sha256=")
            status, _, data = fetch(file_url)
            assert status == 200
            assert hashlib.sha256(data).hexdigest() == digest


def test_pypi_holds_the_unlabelled_default_build(mirror) -> None:
    process, _ = mirror
    page_url = f"{process.url}/pypi/web/simple/torch/"
    _, _, page = fetch(page_url)
    [href] = hrefs(page)
    assert href.startswith("../../packages/torch-2.9.1-cp311-cp311-manylinux_2_28_x86_64.whl#")


def wheel_metadata(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        return wheel.read(name).decode()


# The Requires-Dist the CUDA wheels of torch 2.9.1 add (data/dependency_shapes.yaml), by variant.
LINUX = '; platform_system == "Linux" and platform_machine == "x86_64"'
CUDA_REQUIRES = {
    "cpu": set(),
    "cu126": {"nvidia-cuda-runtime-cu12==12.6.77", "nvidia-cublas-cu12==12.6.4.1",
              "nvidia-cudnn-cu12==9.10.2.21", "nvidia-nccl-cu12==2.27.5", "triton==3.5.1"},
    "cu128": {"nvidia-cuda-runtime-cu12==12.8.90", "nvidia-cublas-cu12==12.8.4.1",
              "nvidia-cudnn-cu12==9.10.2.21", "nvidia-nccl-cu12==2.27.5", "triton==3.5.1"},
}  # fmt: skip
PURE_REQUIRES = {"filelock", "typing-extensions>=4.10.0", "sympy>=1.13.3", "networkx>=2.5.1",
                 "jinja2", "fsspec>=0.8.5"}  # fmt: skip


def requires_dist(metadata: str) -> list[str]:
    return [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
            if line.startswith("Requires-Dist: ")]  # fmt: skip


def on_pypi(base: str, requirement: str) -> list[str]:
    """The files of PyPI's page of ``requirement``'s project whose version it accepts."""
    wanted = Requirement(requirement)
    status, _, page = fetch(f"{base}/pypi/web/simple/{canonicalize_name(wanted.name)}/")
    assert status == 200, requirement
    names = [href.split("#")[0].rsplit("/", 1)[-1] for href in hrefs(page)]
    return [n for n in names if parse_wheel_filename(n)[1] in wanted.specifier]


def test_pypis_torch_requires_the_real_set_and_pypi_holds_all_of_it(mirror) -> None:
    """PyPI's default torch (cu128, unlabelled) requires the pure-Python set and, on Linux x86_64,
    the nvidia-*-cu12 wheels and triton, each pinned; every one (and what sympy and jinja2
    require in turn) is on the mirror's PyPI."""
    process, _ = mirror
    page_url = f"{process.url}/pypi/web/simple/torch/"
    [href] = hrefs(fetch(page_url)[2])
    requires = requires_dist(wheel_metadata(fetch(urljoin(page_url, href.split("#")[0]))[2]))
    assert {r.removesuffix(LINUX) for r in requires if r.endswith(LINUX)} >= CUDA_REQUIRES["cu128"]
    assert sum(r.startswith("nvidia-") for r in requires) == 15
    assert set(requires) >= PURE_REQUIRES
    for requirement in [*requires, "mpmath<1.4,>=1.1.0", "MarkupSafe>=2.0"]:
        if "python_version >=" in requirement:
            continue  # setuptools: not for the hosts' Python 3.11
        assert on_pypi(process.url, requirement.split(";")[0]), requirement


@pytest.mark.parametrize("variant", WHEEL_PAGES)
def test_flat_wheel_pages_list_labelled_wheels_beside_them(mirror, variant: str) -> None:
    """Each page carries the variant's torch family and, as download.pytorch.org's index does,
    the wheels its torch requires; those are on the mirror's PyPI too."""
    process, _ = mirror
    page_url = f"{process.url}/pytorch-wheels/{variant}/"
    status, headers, page = fetch(page_url)
    assert (status, headers["Content-Type"]) == (200, "text/html")
    links = hrefs(page)
    family = [href for href in links if href.startswith(("torch-", "torchvision-", "torchaudio-"))]
    assert [href.split("-")[0] for href in family] == ["torch", "torchvision", "torchaudio"]
    torch_href = family[0]
    assert torch_href.startswith(f"torch-2.9.1%2B{variant}-cp311-cp311-manylinux_2_28_x86_64.whl#")
    file_url, _, digest = urljoin(page_url, torch_href).partition("#sha256=")
    _, _, data = fetch(file_url)
    assert hashlib.sha256(data).hexdigest() == digest
    assert f"Version: 2.9.1+{variant}\n" in wheel_metadata(data)
    requires = requires_dist(wheel_metadata(data))
    marked = {r.removesuffix(LINUX) for r in requires if r.endswith(LINUX)}
    assert CUDA_REQUIRES[variant] <= marked
    assert len(marked) == (0 if variant == "cpu" else 16)
    assert set(requires) >= PURE_REQUIRES
    beside = {href.split("#")[0] for href in links} - {href.split("#")[0] for href in family}
    for requirement in requires:
        if "python_version >=" in requirement:
            continue
        files = on_pypi(process.url, requirement.split(";")[0])
        assert set(files) & beside, f"{variant}: {requirement} is not on the page"


def test_head_gives_the_length_without_a_body(mirror, root: Path) -> None:
    process, _ = mirror
    path = "anaconda/pkgs/main/noarch/repodata.json"
    status, headers, body = fetch(f"{process.url}/{path}", method="HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) == (root / path).stat().st_size


def test_a_missing_file_is_404(mirror) -> None:
    """A channel the mirror does not carry (TUNA excludes pytorch-nightly, mirrors.md §2.3)."""
    process, _ = mirror
    url = f"{process.url}/anaconda/cloud/pytorch-nightly/linux-64/repodata.json"
    assert fetch(url)[0] == 404


def test_every_request_is_logged_as_a_json_line(mirror) -> None:
    process, state = mirror
    path = "/anaconda/cloud/pytorch/noarch/repodata.json"
    _, _, body = fetch(process.url + path)
    entry = [e for e in read_log(state) if e["path"] == path][-1]
    assert set(entry) >= {"time", "method", "path", "status", "bytes", "client", "user_agent"}
    assert (entry["method"], entry["status"], entry["bytes"]) == ("GET", 200, len(body))
    assert (entry["client"], entry["user_agent"]) == ("127.0.0.1", USER_AGENT)
    assert process.log_path.is_file()


def test_other_methods_are_refused_and_logged(mirror) -> None:
    process, state = mirror
    address = urlsplit(process.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=5)
    connection.request("POST", "/pypi/web/simple/", body=b"x")
    assert connection.getresponse().status == 501
    entry = [e for e in read_log(state) if e["method"] == "POST"][-1]
    assert (entry["path"], entry["status"]) == ("/pypi/web/simple/", 501)


# ---- faults ----------------------------------------------------------------------------------


@pytest.fixture
def faulted(mirror):
    """The mirror, with every fault cleared after the test."""
    process, state = mirror
    yield process, state
    for prefix in json.loads(process.faults_path.read_text()):
        set_fault(state, prefix, None)


def last_entry(state: Path, path: str) -> dict:
    return [entry for entry in read_log(state) if entry["path"] == path][-1]


def test_the_fallback_serves_the_same_files_and_has_faults_of_its_own(faulted) -> None:
    process, state = faulted
    path = "/anaconda/cloud/conda-forge/noarch/repodata.json"
    set_fault(state, "/anaconda/", "403")
    first = fetch(process.url + path)
    status, _, body = fetch(f"{process.url}/fallback{path}")
    assert (first[0], status) == (403, 200)
    assert body == (process.root / path.lstrip("/")).read_bytes()
    assert last_entry(state, f"/fallback{path}")["fault"] is None


def test_a_404_fault(faulted) -> None:
    process, state = faulted
    set_fault(state, "/anaconda/cloud/pytorch/", "404")
    path = "/anaconda/cloud/pytorch/linux-64/repodata.json"
    assert fetch(process.url + path)[0] == 404
    assert fetch(f"{process.url}/anaconda/pkgs/main/linux-64/repodata.json")[0] == 200
    assert (last_entry(state, path)["status"], last_entry(state, path)["fault"]) == (404, "404")


def test_a_403_fault_answers_like_tunas_block_page(faulted) -> None:
    process, state = faulted
    set_fault(state, "/pypi/", "403")
    status, _, body = fetch(f"{process.url}/pypi/web/simple/torch/")
    assert status == 403
    assert b"403 Forbidden" in body
    assert b"00000069" in body


def test_a_slow_fault_serves_after_the_delay(faulted) -> None:
    process, state = faulted
    set_fault(state, "/pytorch-wheels/", "slow", delay_s=0.4)
    started = time.monotonic()
    status, _, _ = fetch(f"{process.url}/pytorch-wheels/cpu/")
    assert status == 200
    assert time.monotonic() - started >= 0.4


def test_a_down_fault_closes_the_connection_without_a_response(faulted) -> None:
    process, state = faulted
    set_fault(state, "/", "down")
    address = urlsplit(process.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=5)
    connection.request("GET", "/anaconda/pkgs/main/noarch/repodata.json")
    with pytest.raises(http.client.RemoteDisconnected):
        connection.getresponse()
    entry = last_entry(state, "/anaconda/pkgs/main/noarch/repodata.json")
    assert (entry["status"], entry["fault"]) == (None, "down")


def test_the_longest_prefix_wins_and_clearing_restores_service(faulted) -> None:
    process, state = faulted
    set_fault(state, "/anaconda/", "404")
    set_fault(state, "/anaconda/pkgs/main/", "403")
    main = f"{process.url}/anaconda/pkgs/main/noarch/repodata.json"
    assert fetch(main)[0] == 403
    set_fault(state, "/anaconda/pkgs/main/", None)
    assert fetch(main)[0] == 404
    set_fault(state, "/anaconda/", None)
    assert fetch(main)[0] == 200


def test_unknown_faults_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        set_fault(tmp_path, "/", "500")


# ---- the process -----------------------------------------------------------------------------


def test_starting_again_returns_the_running_mirror(mirror, root: Path) -> None:
    process, state = mirror
    assert start_mirror(root, state) == process
    assert read_mirror(state) == process
    saved = json.loads((state / "mirror.json").read_text())
    assert MirrorProcess.from_json(saved) == process


def pid_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_stop_leaves_no_process_and_no_state(root: Path, tmp_path: Path) -> None:
    process = start_mirror(root, tmp_path)
    assert pid_running(process.pid)
    assert fetch(f"{process.url}/pypi/web/simple/")[0] == 200
    stop_mirror(tmp_path)
    assert not pid_running(process.pid)
    assert not (tmp_path / "mirror.json").exists()
    assert read_mirror(tmp_path) is None


def test_a_fixed_port_is_used(root: Path, tmp_path: Path) -> None:
    first = start_mirror(root, tmp_path / "first")
    port = urlsplit(first.url).port
    stop_mirror(tmp_path / "first")
    second = start_mirror(root, tmp_path / "second", port=port)
    try:
        assert second.url == f"http://127.0.0.1:{port}"
    finally:
        stop_mirror(tmp_path / "second")
