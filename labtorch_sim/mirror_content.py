"""The content of the simulated mirror: TUNA's layout, filled with small synthetic packages.

``build_mirror_content(root)`` writes, under ``root``:

- ``anaconda/pkgs/main/{linux-64,noarch}``: ``python`` 3.11.2 (the host's Debian Python, run as a
  venv-style interpreter) and a real ``pip``; ``anaconda/pkgs/{r,msys2}`` empty;
- ``anaconda/cloud/pytorch/{linux-64,noarch}``: the old pytorch channel's 2.3.1 builds (cpu,
  cuda11.8, cuda12.1) with ``pytorch-mutex``, ``cpuonly`` and ``pytorch-cuda``, which depends on
  the nvidia channel's CUDA packages as the real one does;
- ``anaconda-extra/cloud/nvidia/{linux-64,noarch}``: the nvidia channel as SUSTech serves it
  (TUNA has none), with ``cuda-runtime``, ``cuda-libraries``, ``cuda-cudart``, ... of CUDA 11.8
  and 12.1 (:mod:`labtorch_sim.cuda_packages`); ``anaconda/cloud/nvidia`` links to it, where
  labtorch looks for it on a site mirror with TUNA's layout;
- ``anaconda/cloud/conda-forge/{linux-64,noarch}``: conda-forge's pytorch 2.7.1 (cpu, cuda126,
  cuda129) with its run dependencies (the Python set, and for CUDA builds the CUDA libraries,
  cudnn, nccl, triton: :mod:`labtorch_sim.dependency_shapes`), ``cuda-version``, and
  ``python``/``pip`` as on main;
- ``pypi/web/simple/`` (PEP 503) with the wheels in ``pypi/web/packages/``: torch 2.9.1 as PyPI
  has it (the cu128 build without a label), every wheel the 2.9.1 builds require (the
  ``nvidia-*-cu12`` sets of cu126 and cu128, triton, the pure-Python set), and pip;
- ``pytorch-wheels/{cpu,cu126,cu128}/``: flat find-links pages of the labelled 2.9.1 wheels, laid
  out like Aliyun's mirror of download.pytorch.org, each with the wheels its torch requires.

Every torch, torchvision and torchaudio holds the stand-in of :mod:`labtorch_sim.standin_torch`,
with the version, CUDA, cuDNN and arch list of the build it stands for (CUDA and the arch list
as the real build reports them, from :mod:`labtorch_sim.real_builds`; versions and cuDNN from
``labtorch.data.compat``).
Everything targets the hosts' Python 3.11.
"""

from __future__ import annotations

import base64
import ensurepip
import hashlib
import html
import io
import json
import shutil
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from labtorch.data import compat
from labtorch.data.compat import CPU, ArchList, Release, cuda_of_variant, load_compat
from labtorch.data.files import packaged_data_file
from labtorch_sim import condapkg, cuda_packages, dependency_shapes, real_builds
from labtorch_sim.condapkg import (
    CONDA,
    NOARCH,
    TAR_BZ2,
    CondaPackage,
    index_channel,
    write_package,
)
from labtorch_sim.cuda_packages import nvidia_channel_packages, pytorch_cuda_packages
from labtorch_sim.dependency_shapes import (
    dependency_wheels,
    forge_packages,
    forge_torch_depends,
    torch_wheel_requires,
)
from labtorch_sim.standin_torch import PACKAGES, TorchBuild, payload, source_files

MAIN = Path("anaconda/pkgs/main")
# The other default channels of TUNA's recommended condarc: empty, but there, as conda fails on
# a channel whose repodata is missing.
EMPTY_DEFAULTS = (Path("anaconda/pkgs/r"), Path("anaconda/pkgs/msys2"))
PYTORCH = Path("anaconda/cloud/pytorch")
CONDA_FORGE = Path("anaconda/cloud/conda-forge")
# The nvidia channel where SUSTech serves it (mirrors.md §2.3), and where labtorch expects it on
# a site mirror with TUNA's layout (labtorch.data.mirrors.tuna_layout_mirror): a symlink.
NVIDIA = Path("anaconda-extra/cloud/nvidia")
NVIDIA_ON_SITE_MIRROR = Path("anaconda/cloud/nvidia")
PYPI = Path("pypi/web")
WHEELS = Path("pytorch-wheels")
STAMP = ".labtorch-mirror-content.json"

PYTHON = "3.11"
PYTHON_VERSION = "3.11.2"
PYTHON_DEPENDENCY = "python >=3.11,<3.12.0a0"
SITE_PACKAGES = "lib/python3.11/site-packages"
WHEEL_TAG = "cp311-cp311-manylinux_2_28_x86_64"

CONDA_PYTORCH_RELEASE = "2.3.1"
CONDA_PYTORCH_VARIANTS = (CPU, "cu118", "cu121")
CONDA_FORGE_RELEASE = "2.7.1"
# conda-forge's cuda-version metapackage builds (the 12.6 one as on conda-forge; others get a
# build of the same form).
CUDA_VERSION_BUILDS = {"12.6": "h7480c83_3"}
WHEEL_RELEASE = "2.9.1"
WHEEL_VARIANTS = (CPU, "cu126", "cu128")

# cuDNN of builds whose cuDNN compat does not record: the PyPI wheels' (torch-matrix §1.2). For
# conda-forge 2.7.1 the same release's PyPI cuDNN is used; its own pin is not in the reference.
CUDNN = {"2.7": "9.5.1", "2.9": "9.10.2"}
Source = Literal["wheel", "conda", "forge"]

# The interpreter comes from the host: Debian's /usr/bin/python3.11. condapkg writes regular
# files only, so bin/python* are wrappers instead of symlinks; `exec -a` keeps the wrapper's path
# as argv[0], so Python finds <env>/pyvenv.cfg and sets sys.prefix to the env, as in a venv.
_PYTHON_WRAPPER = b'#!/bin/bash\nexec -a "$0" /usr/bin/python3.11 "$@"\n'
_PYVENV_CFG = (
    f"home = /usr/bin\ninclude-system-site-packages = false\nversion = {PYTHON_VERSION}\n"
).encode()
_PIP_SCRIPT = b'#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n'

# A fixed date keeps wheel bytes, and so their sha256 in the index pages, stable across builds.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


# ---- wheels and index pages ----------------------------------------------------------------


@dataclass(frozen=True)
class Wheel:
    """A wheel: its files (relative to site-packages) and the requirements its METADATA lists."""

    project: str
    version: str
    tag: str
    files: Mapping[str, bytes] = field(default_factory=dict)
    requires: tuple[str, ...] = ()

    @property
    def distribution(self) -> str:
        return self.project.replace("-", "_")

    @property
    def filename(self) -> str:
        return f"{self.distribution}-{self.version}-{self.tag}.whl"


def _metadata(project: str, version: str, requires: Iterable[str]) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {project}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    lines.append("Summary: labtorch simulated-lab stand-in")
    return ("\n".join(lines) + "\n").encode()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def wheel_bytes(wheel: Wheel) -> bytes:
    """The wheel as a zip: its files, then ``METADATA``, ``WHEEL`` and ``RECORD``."""
    dist_info = f"{wheel.distribution}-{wheel.version}.dist-info"
    files = dict(wheel.files)
    files[f"{dist_info}/METADATA"] = _metadata(wheel.project, wheel.version, wheel.requires)
    root_is_purelib = "true" if wheel.tag.endswith("-any") else "false"
    files[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: labtorch_sim\nRoot-Is-Purelib: {root_is_purelib}\n"
        f"Tag: {wheel.tag}\n"
    ).encode()
    record = [f"{path},{_record_hash(data)},{len(data)}" for path, data in sorted(files.items())]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    return _zip(files)


def _zip(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def _write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _link(href: str, data: bytes) -> str:
    return f"{quote(href)}#sha256={hashlib.sha256(data).hexdigest()}"


def write_links_page(directory: Path, title: str, links: Iterable[tuple[str, str]]) -> None:
    """``directory/index.html`` listing ``(href, text)`` links: a PEP 503 or find-links page."""
    anchors = "".join(
        f'    <a href="{html.escape(href)}">{html.escape(text)}</a><br/>\n' for href, text in links
    )
    page = (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{anchors}  </body>\n</html>\n"
    )
    _write_file(directory / "index.html", page.encode())


# ---- builds of torch -------------------------------------------------------------------------


def _companions(release: Release, patch: str) -> tuple[str, str]:
    companions = release.patches[patch]
    if companions.torchvision is None or companions.torchaudio is None:
        raise ValueError(f"torch {patch} has no torchvision/torchaudio in compat")
    return companions.torchvision, companions.torchaudio


def _cuda_facts(
    release: Release, patch: str, variant: str, source: Source
) -> tuple[str, str, ArchList]:
    """cuDNN version, CUDA version and arch list of a CUDA build of ``patch``. CUDA and the arch
    list are what the real build reports (labtorch_sim.real_builds), not compat's: the planner
    reads compat, and the lab's probe must be able to prove it wrong."""
    real = real_builds.real_build(source, patch, variant)
    arch = ArchList.from_torch(list(real.arch_list))
    if source == "conda":
        if release.conda_pytorch is None:
            raise ValueError(f"torch {release.line} was not on the pytorch conda channel")
        return release.conda_pytorch.cudnn[variant], real.cuda, arch
    return CUDNN[release.line], real.cuda, arch


def torch_build(patch: str, variant: str, *, label: bool, source: Source) -> TorchBuild:
    """The build of torch ``patch`` for ``variant`` (``cpu``, ``cu126``) as ``source`` has it.

    ``label``: whether versions carry ``+variant``, as on download.pytorch.org; conda builds and
    PyPI's default build report plain versions.
    """
    release, _ = load_compat().find_release(patch)
    torchvision, torchaudio = _companions(release, patch)
    suffix = f"+{variant}" if label else ""
    versions = (patch + suffix, torchvision + suffix, torchaudio + suffix)
    cuda = cuda_of_variant(variant)
    if cuda is None:
        return TorchBuild(*versions)
    cudnn, cuda, arch = _cuda_facts(release, patch, variant, source)
    return TorchBuild(*versions, cuda=cuda, cudnn=cudnn, arch=arch)


def _dist_info(project: str, version: str) -> dict[str, bytes]:
    """The ``.dist-info`` conda packages of Python projects carry, so pip sees them installed."""
    dist_info = f"{project}-{version}.dist-info"
    return {
        f"{dist_info}/METADATA": _metadata(project, version, ()),
        f"{dist_info}/INSTALLER": b"conda\n",
    }


def _site_packages(files: Mapping[str, bytes]) -> dict[str, bytes]:
    return {f"{SITE_PACKAGES}/{path}": data for path, data in files.items()}


def _conda_payload(build: TorchBuild, package: str) -> dict[str, bytes]:
    version = build.version(package)
    return _site_packages({**payload(build, package), **_dist_info(package, version)})


# ---- conda channels --------------------------------------------------------------------------


def _pip_wheel() -> Path:
    """A real pip wheel: the one ensurepip bundles with this Python, or Debian's copy."""
    for directory in (
        Path(ensurepip.__file__).parent / "_bundled",
        Path("/usr/share/python-wheels"),
    ):
        wheels = sorted(directory.glob("pip-*-py3-none-any.whl"))
        if wheels:
            return wheels[-1]
    raise FileNotFoundError("no pip wheel in ensurepip/_bundled or /usr/share/python-wheels")


def _pip_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def python_packages(pip_wheel: Path) -> list[CondaPackage]:
    """``python`` (the host interpreter as an env) and ``pip`` (the real one) for conda."""
    python = CondaPackage(
        name="python",
        version=PYTHON_VERSION,
        build="h_sim_0",
        files={
            "pyvenv.cfg": _PYVENV_CFG,
            **{f"bin/{name}": _PYTHON_WRAPPER for name in ("python", "python3", "python3.11")},
        },
        executables=frozenset({"bin/python", "bin/python3", "bin/python3.11"}),
    )
    with zipfile.ZipFile(pip_wheel) as archive:
        pip_files = {name: archive.read(name) for name in archive.namelist()}
    pip = CondaPackage(
        name="pip",
        version=_pip_version(pip_wheel),
        build="pyh_sim_0",
        subdir=NOARCH,
        # noarch generic with its files in lib/python3.11: only Python 3.11 can use them.
        depends=(PYTHON_DEPENDENCY,),
        files={**_site_packages(pip_files), "bin/pip": _PIP_SCRIPT},
        executables=frozenset({"bin/pip"}),
    )
    return [python, pip]


def _build_number(build: str) -> int:
    """conda-build ends a build string with ``_<build number>``; builds without it have 0."""
    last = build.rsplit("_", 1)[-1]
    return int(last) if last.isdigit() else 0


def _conda_torch_packages(
    build: TorchBuild, builds: Mapping[str, str], depends: Mapping[str, tuple[str, ...]]
) -> list[CondaPackage]:
    """``pytorch``, ``torchvision`` and ``torchaudio`` of one build, by conda package name.

    pytorch is a ``.tar.bz2``, its companions ``.conda`` files (as the torchvision that real conda
    picked from the pytorch channel in conda-cli.md §2), so that the mirror serves both formats.
    """
    names = {"torch": "pytorch", "torchvision": "torchvision", "torchaudio": "torchaudio"}
    return [
        CondaPackage(
            name=names[package],
            version=build.version(package),
            build=builds[package],
            build_number=_build_number(builds[package]),
            depends=(PYTHON_DEPENDENCY, *depends[package]),
            files=_conda_payload(build, package),
            extension=TAR_BZ2 if package == "torch" else CONDA,
        )
        for package in PACKAGES
    ]


def pytorch_channel_packages() -> list[CondaPackage]:
    """The old ``pytorch`` channel: 2.3.1 per variant, the mutex, cpuonly and pytorch-cuda."""
    channel = load_compat().conda_pytorch_channel
    packages = []
    for variant in CONDA_PYTORCH_VARIANTS:
        build = torch_build(CONDA_PYTORCH_RELEASE, variant, label=False, source="conda")
        if build.cuda is None:
            torch = channel.pytorch_build["cpu"].format(python=PYTHON, number=channel.build_number)
            pins: tuple[str, ...] = ("pytorch-mutex 1.0 cpu",)
        else:
            torch = channel.pytorch_build["cuda"].format(
                python=PYTHON, cuda=build.cuda, cudnn=build.cudnn, number=channel.build_number
            )
            major, minor = compat.cuda_key(build.cuda)
            pins = (
                "pytorch-mutex 1.0 cuda",
                f"pytorch-cuda >={build.cuda},<{major}.{minor + 1}",
            )
        companion = f"py{PYTHON.replace('.', '')}_{variant}"
        companion_pins = (f"pytorch {build.torch}", *pins)
        packages += _conda_torch_packages(
            build,
            {"torch": torch, "torchvision": companion, "torchaudio": companion},
            {"torch": pins, "torchvision": companion_pins, "torchaudio": companion_pins},
        )
    packages += [
        CondaPackage("pytorch-mutex", "1.0", "cuda", NOARCH, build_number=100),
        CondaPackage(
            "pytorch-mutex", "1.0", "cpu", NOARCH, build_number=100, track_features="pytorch-cpu"
        ),
        CondaPackage("cpuonly", "2.0", "0", NOARCH, depends=("pytorch-mutex 1.0 cpu",)),
        # The metapackages pull the CUDA libraries from the nvidia channel, which TUNA does not
        # mirror (see cuda_packages): without it, the CUDA builds cannot be installed.
        *pytorch_cuda_packages(),
    ]
    return packages


def _forge_hash(*parts: str) -> str:
    """A build hash like conda-build's ``h1a2b3c4``, fixed by what the build is."""
    return "h" + hashlib.sha256("-".join(parts).encode()).hexdigest()[:7]


def conda_forge_packages() -> list[CondaPackage]:
    """conda-forge's pytorch 2.7.1, cpu and each CUDA build compat lists for linux-64, with
    companions and a ``cuda-version`` for each CUDA version."""
    release, _ = load_compat().find_release(CONDA_FORGE_RELEASE)
    assert release.conda_forge is not None
    python = f"py{PYTHON.replace('.', '')}"
    packages = []
    for variant in (CPU, *release.conda_forge.variants["linux-64"]):
        build = torch_build(CONDA_FORGE_RELEASE, variant, label=False, source="forge")
        kind = CPU if build.cuda is None else variant.replace("cu", "cuda")
        # conda-forge adds 200 to the build number of CUDA builds, so solvers prefer them.
        number = "0" if build.cuda is None else "200"
        cuda_pins: tuple[str, ...] = ()
        if build.cuda is not None:
            major, minor = compat.cuda_key(build.cuda)
            cuda_pins = (f"cuda-version >={build.cuda},<{major}.{minor + 1}",)
        builds = {
            package: f"{kind}_{python}_{_forge_hash(package, build.version(package), kind)}_0"
            for package in ("torchvision", "torchaudio")
        }
        torch_hash = _forge_hash("pytorch", build.torch, kind)
        builds["torch"] = f"{kind}_generic_{python}_{torch_hash}_{number}"
        # pytorch needs a driver (__cuda) so that GPU-less hosts resolve to the CPU build.
        torch_pins = ("__cuda", *cuda_pins) if build.cuda is not None else ()
        torch_pins += forge_torch_depends(kind)
        companion_pins = (f"pytorch {build.torch} {kind}*", *cuda_pins)
        packages += _conda_torch_packages(
            build,
            builds,
            {"torch": torch_pins, "torchvision": companion_pins, "torchaudio": companion_pins},
        )
    cudas = sorted(
        {cuda_of_variant(v) for v in release.conda_forge.variants["linux-64"]} - {None},
        key=lambda cuda: compat.cuda_key(str(cuda)),
    )
    for cuda in map(str, cudas):
        major = cuda.split(".")[0]
        build = CUDA_VERSION_BUILDS.get(cuda) or f"{_forge_hash('cuda-version', cuda)}_3"
        # cuda-version constrains __cuda to the major version only (torch-matrix.md §3.2).
        packages.append(
            CondaPackage(
                "cuda-version",
                cuda,
                build,
                NOARCH,
                constrains=(f"__cuda >={major}",),
                extension=CONDA,
            )
        )
    return [*packages, *forge_packages()]


# ---- PyPI and the wheel pages ----------------------------------------------------------------


def torch_wheels(build: TorchBuild, variant: str) -> list[Wheel]:
    """torch, torchvision and torchaudio wheels of the ``variant`` build, torch requiring what
    the real wheel of that variant requires (:mod:`labtorch_sim.dependency_shapes`)."""
    requires = torch_wheel_requires(variant)
    # Real torchvision also needs numpy and pillow; the stand-in needs neither: left out.
    torch_pin = (f"torch=={build.torch.split('+')[0]}",)
    return [
        Wheel("torch", build.torch, WHEEL_TAG, payload(build, "torch"), requires),
        Wheel(
            "torchvision", build.torchvision, WHEEL_TAG, payload(build, "torchvision"), torch_pin
        ),
        Wheel("torchaudio", build.torchaudio, WHEEL_TAG, payload(build, "torchaudio"), torch_pin),
    ]


def variant_dependencies(variant: str) -> list[Wheel]:
    """The wheels the ``variant`` torch wheel pulls on the hosts (Linux x86_64, Python 3.11)."""
    return [Wheel(*shape) for shape in dependency_wheels(variant)]


def pypi_wheels() -> list[Wheel]:
    """What TUNA's PyPI gives for torch 2.9.1: the default (unlabelled) build, and every
    dependency of every variant's wheel, as PyPI holds them all (the labelled builds' nvidia-*
    pins are on PyPI too: download.pytorch.org only copies them)."""
    release, _ = load_compat().find_release(WHEEL_RELEASE)
    default = release.pypi_default
    wheels = torch_wheels(torch_build(WHEEL_RELEASE, default, label=False, source="wheel"), default)
    for variant in WHEEL_VARIANTS:
        wheels += variant_dependencies(variant)
    return list({wheel.filename: wheel for wheel in wheels}.values())


def _write_pypi(directory: Path, wheels: list[Wheel], pip_wheel: Path) -> None:
    """PEP 503 pages under ``simple/``; files in ``packages/``, linked relatively."""
    files: dict[str, list[tuple[str, bytes]]] = {}
    for wheel in wheels:
        files.setdefault(wheel.project, []).append((wheel.filename, wheel_bytes(wheel)))
    files["pip"] = [(pip_wheel.name, pip_wheel.read_bytes())]
    for project, entries in sorted(files.items()):
        for filename, data in entries:
            _write_file(directory / "packages" / filename, data)
        links = [(_link(f"../../packages/{name}", data), name) for name, data in entries]
        write_links_page(directory / "simple" / project, f"Links for {project}", links)
    write_links_page(
        directory / "simple",
        "Simple index",
        [(f"{project}/", project) for project in sorted(files)],
    )


def _write_wheel_page(directory: Path, wheels: list[Wheel]) -> None:
    """A flat find-links page with the wheels beside it (``+`` in hrefs escaped as ``%2B``)."""
    links = []
    for wheel in wheels:
        data = wheel_bytes(wheel)
        _write_file(directory / wheel.filename, data)
        links.append((_link(wheel.filename, data), wheel.filename))
    write_links_page(directory, f"Index of /{directory.name}/", links)


# ---- the whole mirror ------------------------------------------------------------------------


def _content_digest(pip_wheel: Path) -> str:
    """What the content depends on: this code, the stand-in, compat's data and the pip wheel."""
    sources = [
        Path(__file__),
        Path(condapkg.__file__),
        Path(cuda_packages.__file__),
        Path(dependency_shapes.__file__),
        dependency_shapes.SHAPES_FILE,
        Path(real_builds.__file__),
        Path(compat.__file__),
        packaged_data_file("releases.yaml"),
        packaged_data_file("cuda.yaml"),
        *source_files(),
        pip_wheel,
    ]
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _write_conda_channel(
    channel: Path, packages: Iterable[CondaPackage], copied_from: Path | None = None
) -> None:
    """Write and index a channel; packages already written into ``copied_from`` are copied."""
    channel.mkdir(parents=True, exist_ok=True)
    for package in packages:
        source = copied_from / package.subdir / package.filename if copied_from else None
        if source is not None and source.is_file():
            (channel / package.subdir).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, channel / package.subdir / package.filename)
        else:
            write_package(package, channel)
    index_channel(channel)


def build_mirror_content(root: Path) -> None:
    """Write the mirror's document root; a no-op when ``root`` already holds this content."""
    pip_wheel = _pip_wheel()
    digest = _content_digest(pip_wheel)
    stamp = root / STAMP
    if stamp.is_file() and json.loads(stamp.read_text()).get("digest") == digest:
        return
    stamp.unlink(missing_ok=True)
    for top in ("anaconda", NVIDIA.parts[0], "pypi", WHEELS.name):
        shutil.rmtree(root / top, ignore_errors=True)
    base = python_packages(pip_wheel)
    _write_conda_channel(root / MAIN, base)
    for channel in EMPTY_DEFAULTS:
        _write_conda_channel(root / channel, [])
    _write_conda_channel(root / PYTORCH, pytorch_channel_packages())
    _write_conda_channel(root / NVIDIA, nvidia_channel_packages())
    link = root / NVIDIA_ON_SITE_MIRROR
    link.symlink_to(Path(*[".."] * (len(link.parent.relative_to(root).parts))) / NVIDIA)
    _write_conda_channel(root / CONDA_FORGE, [*base, *conda_forge_packages()], root / MAIN)
    _write_pypi(root / PYPI, pypi_wheels(), pip_wheel)
    for variant in WHEEL_VARIANTS:
        build = torch_build(WHEEL_RELEASE, variant, label=True, source="wheel")
        # download.pytorch.org's variant index carries the wheels the variant's torch pulls, so a
        # page mirroring it serves them beside torch.
        wheels = [*torch_wheels(build, variant), *variant_dependencies(variant)]
        _write_wheel_page(root / WHEELS / variant, wheels)
    stamp.write_text(json.dumps({"digest": digest}) + "\n")
