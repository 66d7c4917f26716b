"""The PyTorch/CUDA/driver compatibility data, loaded from YAML and checked on load.

``load_compat()`` reads ``data/releases.yaml`` and ``data/cuda.yaml``; any inconsistency (a
variant whose CUDA version has no driver data, a default variant that was not published, a
marker that points nowhere) is a :class:`~labtorch.data.files.DataError` naming file and key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from pathlib import Path

from packaging.version import InvalidVersion, Version

from labtorch.data.files import DataError, Node, load_data_file, packaged_data_file
from labtorch.data.gpus import ComputeCapability

_VARIANT = re.compile(r"^cu(\d+)(\d)$")
_DRIVER = re.compile(r"^\d+(\.\d+){0,2}$")
_MACHINES = {"x86_64", "aarch64"}
_MAC_MACHINES = {"x86_64", "arm64"}
_DRIVER_OSES = {"linux", "windows"}
_CONDA_FORGE_SUBDIRS = {"linux-64", "linux-aarch64", "win-64", "osx-64", "osx-arm64"}
_BUILD_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")

CPU = "cpu"


def cuda_of_variant(variant: str) -> str | None:
    """``"cu121"`` -> ``"12.1"``, ``"cu130"`` -> ``"13.0"``, ``"cpu"`` -> None; ValueError else."""
    if variant == CPU:
        return None
    match = _VARIANT.match(variant)
    if not match:
        raise ValueError(f"not a PyTorch variant: {variant!r} (expected cpu or cuXYZ, e.g. cu121)")
    return f"{int(match.group(1))}.{match.group(2)}"


def cuda_key(cuda: str) -> tuple[int, int]:
    major, minor = cuda.split(".")[:2]
    return int(major), int(minor)


def driver_key(driver: str) -> tuple[int, ...]:
    """Order driver versions numerically: ``"570.86.10" < "570.124.06"``; ``"580"`` is 580.0.0."""
    parts = tuple(int(part) for part in driver.split("."))
    return parts + (0,) * (3 - len(parts))


@dataclass(frozen=True)
class ArchList:
    """A TORCH_CUDA_ARCH_LIST: the SASS compiled in, and the architecture whose PTX is embedded."""

    sass: tuple[ComputeCapability, ...]
    ptx: ComputeCapability | None

    @classmethod
    def parse(cls, text: str) -> ArchList:
        entries = [entry.strip() for entry in text.split(";") if entry.strip()]
        if not entries:
            raise ValueError("empty arch list")
        sass = []
        ptx = None
        for entry in entries:
            name, plus, suffix = entry.partition("+")
            if plus and suffix != "PTX":
                raise ValueError(f"unknown arch suffix in {entry!r}")
            capability = ComputeCapability.parse(name)
            sass.append(capability)
            if plus:
                # "+PTX" may sit on any entry (the old pytorch channel's "3.7+PTX;5.0;...");
                # labtorch keeps one PTX architecture per build, as the builds have.
                if ptx is not None:
                    raise ValueError(f"more than one +PTX entry in {text!r}")
                ptx = capability
        return cls(tuple(sorted(sass)), ptx)

    @classmethod
    def from_torch(cls, names: list[str]) -> ArchList:
        """From ``torch.cuda.get_arch_list()``: ``sm_86`` is SASS, ``compute_120`` PTX.

        Arch-specific targets such as ``sm_90a`` run on that one GPU only, so they are left out.
        """
        sass, ptx = [], []
        for name in names:
            try:
                capability = ComputeCapability.parse(name)
            except ValueError:
                continue
            (ptx if name.startswith("compute_") else sass).append(capability)
        return cls(tuple(sorted(sass)), max(ptx) if ptx else None)

    def kernel_for(self, gpu: ComputeCapability) -> str | None:
        """How this build runs on ``gpu``: ``"sm_86"`` (SASS), ``"compute_120"`` (PTX JIT), or None.

        SASS for X.y runs on X.z when z >= y, never across majors; PTX for X.y is JIT-compiled
        for any GPU at or above X.y.
        """
        same_major = [cc for cc in self.sass if cc.major == gpu.major and cc.minor <= gpu.minor]
        if same_major:
            return max(same_major).sm
        if self.ptx is not None and gpu >= self.ptx:
            return f"compute_{self.ptx.major}{self.ptx.minor}"
        return None

    def __str__(self) -> str:
        names = [str(cc) for cc in self.sass]
        if self.ptx is not None:
            names[names.index(str(self.ptx))] += "+PTX"
        return ";".join(names)


@dataclass(frozen=True)
class CudaDriverFloor:
    """The drivers one CUDA version needs, per OS (``linux``, ``windows``); None: not applicable."""

    cuda: str
    minor_compat: dict[str, str | None]
    full: dict[str, str | None]
    unconfirmed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PatchRelease:
    version: str
    torchvision: str | None
    torchaudio: str | None


@dataclass(frozen=True)
class CondaPytorchBuilds:
    """A release on the old ``pytorch`` conda channel."""

    cudnn: dict[str, str]
    arch: dict[str, ArchList]
    companions: dict[str, PatchRelease]


@dataclass(frozen=True)
class CondaForgeBuildGroup:
    """Builds ``first``..``last`` (the recipe's build numbers) of one patch release on
    conda-forge: the variants (``cpu`` and CUDA) per subdir, the arch lists where they differ
    from the channel's list for their CUDA version, and the Jetson (``tegra``) builds of
    linux-aarch64 with their own arch lists."""

    first: int
    last: int
    subdirs: dict[str, tuple[str, ...]]
    arch: dict[tuple[str, str], ArchList] = field(default_factory=dict)
    tegra: dict[str, ArchList] = field(default_factory=dict)


@dataclass(frozen=True)
class CondaForgeBuilds:
    """A release on conda-forge: its patch releases, each with its groups of builds.

    ``variants`` is the union of the CUDA variants per subdir over every patch and build.
    """

    patches: tuple[str, ...]
    variants: dict[str, tuple[str, ...]]
    builds: dict[str, tuple[CondaForgeBuildGroup, ...]] = field(default_factory=dict)

    def has(self, patch: str, subdir: str) -> bool:
        """Whether conda-forge has any build of ``patch`` for ``subdir``."""
        return any(subdir in group.subdirs for group in self.builds.get(patch, ()))

    def variants_for(self, patch: str, subdir: str) -> tuple[str, ...]:
        """The CUDA variants of ``patch`` on ``subdir`` over all its builds, oldest CUDA first."""
        found = {
            variant
            for group in self.builds.get(patch, ())
            for variant in group.subdirs.get(subdir, ())
            if variant != CPU
        }
        return tuple(sorted(found, key=lambda v: cuda_key(cuda_of_variant(v))))

    def newest_group(self, patch: str, subdir: str, variant: str) -> CondaForgeBuildGroup | None:
        """The group with the highest build numbers that has ``variant`` on ``subdir``: the one a
        solver takes for a build string that names the variant."""
        groups = [g for g in self.builds.get(patch, ()) if variant in g.subdirs.get(subdir, ())]
        return max(groups, key=lambda g: g.last) if groups else None

    def tegra_for(self, patch: str) -> dict[str, ArchList]:
        """The Jetson builds of ``patch`` (linux-aarch64, ``arm-variant=*=tegra``) of the newest
        group that has any."""
        groups = [g for g in self.builds.get(patch, ()) if g.tegra]
        return dict(max(groups, key=lambda g: g.last).tegra) if groups else {}


@dataclass(frozen=True)
class Release:
    """One release line of PyTorch, such as 2.3."""

    line: str
    released: str
    patches: dict[str, PatchRelease]
    python_min: str
    python_max: str
    glibc: dict[str, str]
    macos: dict[str, str | None]
    pypi_default: str
    variants: dict[str, ArchList]
    aarch64_default: str
    aarch64_variants: dict[str, ArchList]
    rocm: tuple[str, ...]
    conda_pytorch: CondaPytorchBuilds | None
    conda_forge: CondaForgeBuilds | None
    unconfirmed: frozenset[str] = field(default_factory=frozenset)
    # Newer CPython wheels on PyPI for one platform than the release supports everywhere.
    python_pip_max: dict[str, str] = field(default_factory=dict)
    # Arch lists of the Windows wheels where they differ from the Linux x86_64 ones.
    windows_variants: dict[str, ArchList] = field(default_factory=dict)

    @property
    def newest_patch(self) -> PatchRelease:
        return self.patches[max(self.patches, key=Version)]

    def python_max_for(self, platform: str | None = None, installer: str | None = None) -> str:
        """The newest Python of this release for ``platform`` and ``installer`` (pip wheels can
        reach further than the release's support on one platform)."""
        if installer == "pip" and platform in self.python_pip_max:
            return self.python_pip_max[platform]
        return self.python_max

    def supports_python(
        self, python: str, platform: str | None = None, installer: str | None = None
    ) -> bool:
        newest = self.python_max_for(platform, installer)
        return cuda_key(self.python_min) <= cuda_key(python) <= cuda_key(newest)

    def wheel_variants(self, platform: str) -> dict[str, ArchList]:
        """The CUDA wheels of this release for ``platform`` and their arch lists."""
        if platform == "linux-aarch64":
            return dict(self.aarch64_variants)
        if platform == "win-64":
            return {**self.variants, **self.windows_variants}
        return dict(self.variants)

    def is_unconfirmed(self, *keys: str) -> bool:
        """True when the reference marks ``a.b.c`` or any of its parents unconfirmed."""
        for key in keys:
            parts = key.split(".")
            if any(".".join(parts[:n]) in self.unconfirmed for n in range(1, len(parts) + 1)):
                return True
        return False


@dataclass(frozen=True)
class CondaPytorchChannel:
    last_release: str
    pytorch_build: dict[str, str]
    build_number: int
    pytorch_cuda: tuple[str, ...]
    # Build strings per platform where they differ from ``pytorch_build`` (win-64 names the
    # cuDNN major only), and the companions' (torchvision, torchaudio) build string.
    platform_builds: dict[str, dict[str, str]] = field(default_factory=dict)
    companion_build: str | None = None

    def build_format(self, kind: str, platform: str) -> str:
        """The pytorch build-string format of ``kind`` (cuda, cpu, osx) on ``platform``."""
        return self.platform_builds.get(platform, {}).get(kind, self.pytorch_build[kind])


@dataclass(frozen=True)
class CondaForgeChannel:
    pytorch_build: dict[str, str]
    arch: dict[str, ArchList]
    # Compute capabilities of Jetson (Tegra) GPUs: before CUDA 13 they need the tegra builds.
    tegra_capabilities: frozenset[ComputeCapability] = frozenset()


@dataclass(frozen=True)
class Compat:
    """Everything labtorch knows about PyTorch builds and the drivers they need."""

    releases: dict[str, Release]
    cuda: dict[str, CudaDriverFloor]
    conda_pytorch_channel: CondaPytorchChannel
    conda_forge: CondaForgeChannel

    def find_release(self, requested: str) -> tuple[Release, PatchRelease]:
        """Resolve ``"2.3"`` (its newest patch) or ``"2.3.1"``; KeyError names what exists."""
        try:
            version = Version(requested)
        except InvalidVersion:
            raise KeyError(f"{requested!r} is not a torch version (e.g. 2.3.1 or 2.3)") from None
        if version.local or version.pre or version.dev:
            raise KeyError(
                f"give the release without a label or pre-release ({version.public}); "
                "labtorch chooses the variant"
            )
        line = f"{version.major}.{version.minor}"
        release = self.releases.get(line)
        if release is None:
            known = ", ".join(self.releases)
            raise KeyError(f"unknown torch release {requested}; known release lines: {known}")
        if len(version.release) == 2:
            return release, release.newest_patch
        patch = release.patches.get(str(version))
        if patch is None:
            known = ", ".join(release.patches)
            raise KeyError(f"unknown torch release {requested}; the {line} line has {known}")
        return release, patch

    def releases_from(self, line: str) -> list[Release]:
        """This release line and every newer one, oldest first."""
        start = cuda_key(line)
        return [r for key, r in self.releases.items() if cuda_key(key) >= start]


def _arch(node: Node) -> ArchList:
    try:
        return ArchList.parse(node.text())
    except ValueError as exc:
        raise node.error(str(exc)) from None


def _version_text(node: Node, pattern: re.Pattern[str], what: str) -> str:
    text = node.text()
    if not pattern.match(text):
        raise node.error(f"expected {what}, found {text!r}")
    return text


_PY = re.compile(r"^3\.\d+$")
_LINE = re.compile(r"^\d+\.\d+$")
_PATCH = re.compile(r"^\d+\.\d+\.\d+$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")


def _cuda_floors(root: Node) -> dict[str, CudaDriverFloor]:
    root.mapping({"cuda"}, {"cuda"})
    floors = {}
    for cuda, node in root["cuda"].items():
        if not _LINE.match(cuda):
            raise node.error("a CUDA version must look like 12.1")
        node.mapping({"minor_compat", "full", "unconfirmed"}, {"minor_compat", "full"})
        tables = {}
        for kind in ("minor_compat", "full"):
            table = node[kind]
            table.mapping(_DRIVER_OSES, _DRIVER_OSES)
            tables[kind] = {
                os: None
                if entry.value is None
                else _version_text(entry, _DRIVER, "a driver version")
                for os, entry in table.items()
            }
        unconfirmed = frozenset(node.get("unconfirmed", []).text_list())
        for key in unconfirmed - {"minor_compat", "full"}:
            raise node.error(f"unconfirmed names {key!r}, which is not a key here")
        floors[cuda] = CudaDriverFloor(cuda, tables["minor_compat"], tables["full"], unconfirmed)
    return floors


def _variants(node: Node, cuda: dict[str, CudaDriverFloor]) -> dict[str, ArchList]:
    variants = {}
    for name, entry in node.items():
        try:
            version = cuda_of_variant(name)
        except ValueError as exc:
            raise entry.error(str(exc)) from None
        if version is None:
            raise entry.error("cpu is implied for every release; list CUDA variants only")
        if version not in cuda:
            raise entry.error(f"CUDA {version} has no driver data in cuda.yaml; add it there")
        variants[name] = _arch(entry)
    return variants


def _patches(node: Node, line: str) -> dict[str, PatchRelease]:
    patches = {}
    for version, entry in node.items():
        if not _PATCH.match(version) or not version.startswith(f"{line}."):
            raise entry.error(f"a patch release of {line} must look like {line}.N")
        entry.mapping({"torchvision", "torchaudio"}, {"torchvision", "torchaudio"})
        patches[version] = PatchRelease(
            version, entry["torchvision"].optional_text(), entry["torchaudio"].optional_text()
        )
    if not patches:
        raise node.error("a release needs at least one patch release")
    return patches


def _conda_pytorch(node: Node, variants: dict[str, ArchList], line: str) -> CondaPytorchBuilds:
    node.mapping({"cudnn", "arch", "companions"}, {"cudnn", "arch"})
    cudnn = {}
    for name, entry in node["cudnn"].items():
        if name not in variants:
            raise entry.error(f"{name} is not a variant of {line}")
        cudnn[name] = entry.text()
    arch = {}
    for name, entry in node["arch"].items():
        if name not in cudnn:
            raise entry.error(f"{name} has no cudnn entry")
        arch[name] = _arch(entry)
    companions = {
        version: PatchRelease(version, entry["torchvision"].text(), entry["torchaudio"].text())
        for version, entry in node.get("companions", {}).items()
    }
    return CondaPytorchBuilds(cudnn, arch, companions)


def _variant_name(node: Node, name: str, allow_cpu: bool) -> str:
    try:
        cuda_of_variant(name)
    except ValueError as exc:
        raise node.error(str(exc)) from None
    if name == CPU and not allow_cpu:
        raise node.error("cpu has no arch list")
    return name


def _build_range(node: Node, text: str) -> tuple[int, int]:
    match = _BUILD_RANGE.match(text)
    if not match:
        raise node.error(f"a build-number range must look like 0 or 1-4, found {text!r}")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if last < first:
        raise node.error(f"build range {text} runs backwards")
    return first, last


def _forge_group(node: Node, text: str, cuda: dict[str, CudaDriverFloor]) -> CondaForgeBuildGroup:
    node.mapping({*_CONDA_FORGE_SUBDIRS, "arch", "tegra"})
    first, last = _build_range(node, text)
    subdirs = {}
    for subdir in sorted(_CONDA_FORGE_SUBDIRS):
        if subdir not in node.value:
            continue
        entry = node[subdir]
        names = tuple(_variant_name(entry, name, allow_cpu=True) for name in entry.text_list())
        if subdir.startswith("osx") and names != (CPU,):
            raise entry.error("conda-forge's macOS builds are cpu only")
        for name in names:
            version = cuda_of_variant(name)
            if version is not None and version not in cuda:
                raise entry.error(f"conda-forge CUDA {version} has no driver data in cuda.yaml")
        subdirs[subdir] = names
    arch = {}
    for subdir, entries in node.get("arch", {}).items():
        for name, entry in entries.items():
            if name not in subdirs.get(subdir, ()):
                raise entry.error(f"{subdir} has no {name} build in this group")
            arch[(subdir, _variant_name(entry, name, allow_cpu=False))] = _arch(entry)
    tegra = {}
    for name, entry in node.get("tegra", {}).items():
        version = cuda_of_variant(_variant_name(entry, name, allow_cpu=False))
        if version not in cuda:
            raise entry.error(f"conda-forge CUDA {version} has no driver data in cuda.yaml")
        tegra[name] = _arch(entry)
    return CondaForgeBuildGroup(first, last, subdirs, arch, tegra)


def _conda_forge(
    node: Node, release_patches: dict[str, PatchRelease], cuda: dict[str, CudaDriverFloor]
) -> CondaForgeBuilds:
    builds = {}
    for version, patch_node in node.items():
        if version not in release_patches:
            raise patch_node.error(f"{version} is not a patch release of this line")
        patch_node.mapping()
        groups = [_forge_group(group, text, cuda) for text, group in patch_node.items()]
        if not groups:
            raise patch_node.error("list at least one group of builds")
        ordered = sorted(groups, key=lambda g: g.first)
        for before, after in pairwise(ordered):
            if after.first <= before.last:
                raise patch_node.error(
                    f"build ranges {before.first}-{before.last} and {after.first}-{after.last} "
                    "overlap"
                )
        builds[version] = tuple(ordered)
    union: dict[str, set[str]] = {subdir: set() for subdir in _CONDA_FORGE_SUBDIRS}
    for groups in builds.values():
        for group in groups:
            for subdir, names in group.subdirs.items():
                union[subdir].update(name for name in names if name != CPU)
    variants = {
        subdir: tuple(sorted(names, key=lambda v: cuda_key(cuda_of_variant(v))))
        for subdir, names in sorted(union.items())
    }
    return CondaForgeBuilds(tuple(builds), variants, builds)


def _check_marker(node: Node, key: str) -> None:
    """Resolve a dotted marker like ``patches.2.12.0.torchvision``; keys may contain dots."""
    value = node.value
    rest = key
    while rest:
        if not isinstance(value, dict):
            raise node.error(f"unconfirmed marker {key!r} points nowhere")
        match = next(
            (
                k
                for k in sorted(value, key=len, reverse=True)
                if rest == k or rest.startswith(k + ".")
            ),
            None,
        )
        if match is None:
            raise node.error(f"unconfirmed marker {key!r} points nowhere")
        value = value[match]
        rest = rest[len(match) + 1 :]


_RELEASE_KEYS = {
    "released",
    "patches",
    "python",
    "glibc",
    "macos",
    "pypi_default",
    "variants",
    "aarch64",
    "rocm",
    "conda_pytorch",
    "conda_forge",
    "windows",
    "unconfirmed",
}
_RELEASE_REQUIRED = {"released", "patches", "python", "glibc", "macos", "pypi_default", "variants"}


def _release(line: str, node: Node, cuda: dict[str, CudaDriverFloor]) -> Release:
    if not _LINE.match(line):
        raise node.error("a release line must look like 2.3")
    node.mapping(_RELEASE_KEYS, _RELEASE_REQUIRED)
    python = node["python"]
    python.mapping({"min", "max", "pip_max"}, {"min", "max"})
    python_min = _version_text(python["min"], _PY, "a Python version like 3.11")
    python_max = _version_text(python["max"], _PY, "a Python version like 3.11")
    if cuda_key(python_min) > cuda_key(python_max):
        raise python.error(f"min {python_min} is above max {python_max}")
    pip_max = {}
    for platform, entry in python.get("pip_max", {}).items():
        pip_max[platform] = _version_text(entry, _PY, "a Python version like 3.11")
        if cuda_key(pip_max[platform]) <= cuda_key(python_max):
            raise entry.error(f"{pip_max[platform]} is not above max {python_max}")
    glibc = node["glibc"]
    glibc.mapping(_MACHINES, {"x86_64"})
    macos = node["macos"]
    macos.mapping(_MAC_MACHINES)
    variants = _variants(node["variants"], cuda)
    pypi_default = node["pypi_default"].text()
    if pypi_default != CPU and pypi_default not in variants:
        raise node["pypi_default"].error(f"{pypi_default} is not among the variants of {line}")
    aarch64 = node.get("aarch64", {"pypi_default": CPU, "variants": {}})
    aarch64.mapping({"pypi_default", "variants"}, {"pypi_default", "variants"})
    aarch64_variants = _variants(aarch64["variants"], cuda)
    aarch64_default = aarch64["pypi_default"].text()
    if aarch64_default != CPU and aarch64_default not in aarch64_variants:
        raise aarch64["pypi_default"].error(f"{aarch64_default} is not among the aarch64 variants")
    windows = node.get("windows", {"variants": {}})
    windows.mapping({"variants"}, {"variants"})
    windows_variants = _variants(windows["variants"], cuda)
    for name, entry in windows["variants"].items():
        if name not in variants:
            raise entry.error(f"{name} is not among the variants of {line}")
    patches = _patches(node["patches"], line)
    conda_pytorch = node.get("conda_pytorch")
    conda_forge = node.get("conda_forge")
    unconfirmed = node.get("unconfirmed", [])
    for marker in unconfirmed.elements():
        _check_marker(node, marker.text())
    released = node["released"]
    return Release(
        line=line,
        released=_version_text(released, _MONTH, "a month like 2024-04"),
        patches=patches,
        python_min=python_min,
        python_max=python_max,
        glibc={machine: entry.text() for machine, entry in glibc.items()},
        macos={machine: entry.optional_text() for machine, entry in macos.items()},
        pypi_default=pypi_default,
        variants=variants,
        aarch64_default=aarch64_default,
        aarch64_variants=aarch64_variants,
        rocm=tuple(node.get("rocm", []).text_list()),
        conda_pytorch=None
        if conda_pytorch.value is None
        else _conda_pytorch(conda_pytorch, variants, line),
        conda_forge=None if conda_forge.value is None else _conda_forge(conda_forge, patches, cuda),
        unconfirmed=frozenset(unconfirmed.text_list()),
        python_pip_max=pip_max,
        windows_variants=windows_variants,
    )


_BUILD_FIELDS = {
    "cuda": {"python", "cuda", "cudnn", "cudnn_major", "number"},
    "cpu": {"python", "number"},
    "osx": {"python", "number"},
}
_FIELD = re.compile(r"\{(\w+)\}")


def _build_format(entry: Node, allowed: set[str]) -> str:
    text = entry.text()
    unknown = sorted(set(_FIELD.findall(text)) - allowed)
    if unknown:
        raise entry.error(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return text


def _conda_pytorch_channel(node: Node) -> CondaPytorchChannel:
    node.mapping(
        {
            "last_release",
            "pytorch_build",
            "platform_builds",
            "build_number",
            "companion_build",
            "pytorch_cuda",
        },
        {"last_release", "pytorch_build", "build_number", "pytorch_cuda"},
    )
    builds = node["pytorch_build"]
    builds.mapping(set(_BUILD_FIELDS), set(_BUILD_FIELDS))
    platform_builds = {}
    for platform, entries in node.get("platform_builds", {}).items():
        entries.mapping(set(_BUILD_FIELDS))
        platform_builds[platform] = {
            kind: _build_format(entry, _BUILD_FIELDS[kind]) for kind, entry in entries.items()
        }
    companion = node.get("companion_build")
    return CondaPytorchChannel(
        last_release=_version_text(node["last_release"], _PATCH, "a release like 2.5.1"),
        pytorch_build={
            kind: _build_format(entry, _BUILD_FIELDS[kind]) for kind, entry in builds.items()
        },
        build_number=node["build_number"].expect(int, "an integer"),
        pytorch_cuda=tuple(node["pytorch_cuda"].text_list()),
        platform_builds=platform_builds,
        companion_build=None
        if companion.value is None
        else _build_format(companion, {"python_nodot", "variant"}),
    )


def _conda_forge_channel(node: Node, cuda: dict[str, CudaDriverFloor]) -> CondaForgeChannel:
    node.mapping({"pytorch_build", "arch", "tegra_capabilities"}, {"pytorch_build", "arch"})
    builds = node["pytorch_build"]
    builds.mapping({"cuda", "cpu"}, {"cuda", "cpu"})
    arch = {}
    for version, entry in node["arch"].items():
        if version not in cuda:
            raise entry.error(f"CUDA {version} has no driver data in cuda.yaml")
        arch[version] = _arch(entry)
    tegra = set()
    for entry in node.get("tegra_capabilities", []).elements():
        try:
            tegra.add(ComputeCapability.parse(entry.text()))
        except ValueError as exc:
            raise entry.error(str(exc)) from None
    return CondaForgeChannel(
        {kind: entry.text() for kind, entry in builds.items()}, arch, frozenset(tegra)
    )


def parse_compat(releases_root: Node, cuda_root: Node) -> Compat:
    """Build and check the compatibility data from two parsed YAML documents."""
    cuda = _cuda_floors(cuda_root)
    releases_root.mapping(
        {"releases", "conda_pytorch_channel", "conda_forge"},
        {"releases", "conda_pytorch_channel", "conda_forge"},
    )
    releases = {
        line: _release(line, node, cuda) for line, node in releases_root["releases"].items()
    }
    ordered = dict(sorted(releases.items(), key=lambda item: cuda_key(item[0])))
    if list(ordered) != list(releases):
        raise DataError(releases_root.file, "releases", "list release lines oldest first")
    return Compat(
        releases=releases,
        cuda=cuda,
        conda_pytorch_channel=_conda_pytorch_channel(releases_root["conda_pytorch_channel"]),
        conda_forge=_conda_forge_channel(releases_root["conda_forge"], cuda),
    )


def load_compat_files(releases_file: Path, cuda_file: Path) -> Compat:
    return parse_compat(load_data_file(releases_file), load_data_file(cuda_file))


@cache
def load_compat() -> Compat:
    """The compatibility data shipped with labtorch (read once per process)."""
    return load_compat_files(packaged_data_file("releases.yaml"), packaged_data_file("cuda.yaml"))
