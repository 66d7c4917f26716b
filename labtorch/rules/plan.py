"""The rules engine: for one host and one pinned PyTorch release, which build, from where, and why.

Pure: facts and a request in, a :class:`Plan` out. ``auto`` picks the newest CUDA variant that
the driver runs and that has kernels for every GPU of the host; a GPU host gets the CPU build only
with a stated reason. Every decision is explained in ``Plan.reasons``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from packaging.version import Version

from labtorch.data.compat import (
    CPU,
    ArchList,
    Compat,
    PatchRelease,
    Release,
    cuda_key,
    cuda_of_variant,
    driver_key,
)
from labtorch.data.gpus import Gpu
from labtorch.data.mirrors import DEFAULTS, Mirror, MirrorCatalog, NotMirrored
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport

AUTO = "auto"
PLATFORMS = ("linux-64", "linux-aarch64", "osx-arm64", "osx-64", "win-64")
INSTALLERS = ("conda", "pip")
DRIVER_POLICIES = ("strict", "minor")
CONDA_CHANNELS = (AUTO, "pytorch", "conda-forge")

PIP = "pip"
CONDA_PYTORCH = "pytorch"
CONDA_FORGE = "conda-forge"
NVIDIA = "nvidia"


class RequestError(ValueError):
    """The request itself is wrong (unknown release, variant, platform): nothing to plan."""


@dataclass(frozen=True)
class HostFacts:
    """What labtorch knows about one host.

    ``nvidia_smi`` is the parsed nvidia-smi output, or ``None`` when nvidia-smi is absent.
    ``python`` is the interpreter pip installs into (None: labtorch chooses).
    """

    platform: str = "linux-64"
    glibc: str | None = None
    macos: str | None = None
    python: str | None = None
    nvidia_smi: SmiReport | SmiFailure | None = None


@dataclass(frozen=True)
class Request:
    """What the admin asks for.

    + torch: a release (``2.3.1``) or a release line (``2.3``: its newest patch)
    + installer: ``conda`` or ``pip``
    + variant: ``auto``, ``cpu`` or a CUDA variant such as ``cu121``
    + driver_policy: ``strict`` (the driver's CUDA version is at least the build's) or ``minor``
      (CUDA minor-version compatibility: any driver of the build's CUDA major, with a
      limited feature set)
    + toolkit: also install a CUDA toolkit with nvcc that matches the build
    + python: the Python of the env (None: the host's for pip, the newest supported for conda)
    + conda_channel: ``auto``, ``pytorch`` (the old channel, up to 2.5.1) or ``conda-forge``
    + mirror: the mirror for conda channels and PyPI (``tuna``)
    + wheel_mirror: the mirror of the PyTorch wheel indexes, which TUNA does not have
    """

    torch: str
    installer: str = "conda"
    variant: str = AUTO
    driver_policy: str = "strict"
    toolkit: bool = False
    python: str | None = None
    conda_channel: str = AUTO
    mirror: str = "tuna"
    wheel_mirror: str = "aliyun"


@dataclass(frozen=True)
class PackagePin:
    """One package of a plan, pinned exactly.

    ``version`` is the full version (with its local label on the pip route, ``2.3.1+cu121``);
    ``build`` the conda build string (a glob where the channel's hash decides the rest).
    ``source`` names the channel or index; ``url`` is where it is on the mirror.
    """

    name: str
    version: str
    build: str | None
    source: str
    url: str

    @property
    def spec(self) -> str:
        if self.source in (PIP, "pytorch-wheels"):
            return f"{self.name}=={self.version}"
        if self.build:
            return f"{self.name}={self.version}={self.build}"
        return f"{self.name}={self.version}"


@dataclass(frozen=True)
class Plan:
    """The answer for one host: a build and its source, or a refusal; always with reasons."""

    refused: bool
    torch_release: str
    installer: str
    platform: str
    variant: str | None = None
    cuda: str | None = None
    python: str | None = None
    packages: tuple[PackagePin, ...] = ()
    toolkit: tuple[PackagePin, ...] = ()
    channels: tuple[str, ...] = ()
    channel_urls: tuple[str, ...] = ()
    index_url: str | None = None
    wheel_index: tuple[str, str] | None = None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def torch(self) -> PackagePin | None:
        return next((p for p in self.packages if p.name in ("torch", "pytorch")), None)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["packages"] = [{**asdict(p), "spec": p.spec} for p in self.packages]
        data["toolkit"] = [{**asdict(p), "spec": p.spec} for p in self.toolkit]
        return data


@dataclass(frozen=True)
class Route:
    """Where builds of one release come from for one installer and platform."""

    kind: str
    description: str
    cuda_builds: dict[str, ArchList | None] = field(default_factory=dict)


@dataclass
class _Decision:
    """The plan being built; reasons and warnings accumulate as rules fire."""

    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- checking the request


def _check_request(request: Request, facts: HostFacts, compat: Compat) -> None:
    if request.installer not in INSTALLERS:
        raise RequestError(f"unknown installer {request.installer!r}; use conda or pip")
    if request.driver_policy not in DRIVER_POLICIES:
        raise RequestError(f"unknown driver policy {request.driver_policy!r}; use strict or minor")
    if request.conda_channel not in CONDA_CHANNELS:
        raise RequestError(
            f"unknown conda channel {request.conda_channel!r}; use {', '.join(CONDA_CHANNELS)}"
        )
    if facts.platform not in PLATFORMS:
        raise RequestError(
            f"unknown platform {facts.platform!r}; use one of {', '.join(PLATFORMS)}"
        )
    if request.variant not in (AUTO, CPU):
        try:
            cuda = cuda_of_variant(request.variant)
        except ValueError as exc:
            raise RequestError(f"unknown variant {request.variant!r}: {exc}") from None
        if cuda not in compat.cuda:
            known = ", ".join(f"cu{v.replace('.', '')}" for v in compat.cuda)
            raise RequestError(f"unknown variant {request.variant!r}; CUDA variants known: {known}")


def _check_mirrors(request: Request, catalog: MirrorCatalog) -> Mirror:
    try:
        catalog[request.wheel_mirror]
        return catalog[request.mirror]
    except KeyError as exc:
        raise RequestError(exc.args[0]) from None


def _find_release(request: Request, compat: Compat) -> tuple[Release, PatchRelease]:
    try:
        return compat.find_release(request.torch)
    except KeyError as exc:
        raise RequestError(exc.args[0]) from None


# ---------------------------------------------------------------- routes


def _pip_route(release: Release, platform: str) -> Route:
    if platform.startswith("osx"):
        return Route(PIP, "PyPI (macOS wheels are CPU/MPS only)")
    variants = release.aarch64_variants if platform == "linux-aarch64" else release.variants
    return Route(PIP, "the PyTorch wheels", dict(variants))


def _conda_pytorch_route(release: Release, platform: str) -> Route:
    builds = release.conda_pytorch
    cuda_builds = {}
    if builds and platform in ("linux-64", "win-64"):
        cuda_builds = {variant: builds.arch.get(variant) for variant in builds.cudnn}
    return Route(CONDA_PYTORCH, "the pytorch conda channel", cuda_builds)


def _conda_forge_route(release: Release, platform: str, compat: Compat) -> Route:
    builds = release.conda_forge
    variants = builds.variants.get(platform, ()) if builds else ()
    cuda_builds = {v: compat.conda_forge.arch.get(cuda_of_variant(v)) for v in variants}
    return Route(CONDA_FORGE, "conda-forge", cuda_builds)


def _on_conda_pytorch(release: Release, patch: PatchRelease, compat: Compat) -> bool:
    last = Version(compat.conda_pytorch_channel.last_release)
    return release.conda_pytorch is not None and Version(patch.version) <= last


def _on_conda_forge(release: Release, patch: PatchRelease) -> bool:
    return release.conda_forge is not None and patch.version in release.conda_forge.patches


def _choose_route(
    request: Request,
    release: Release,
    patch: PatchRelease,
    platform: str,
    compat: Compat,
    d: _Decision,
) -> Route | None:
    if request.installer == PIP:
        return _pip_route(release, platform)
    wanted = request.conda_channel
    on_forge = _on_conda_forge(release, patch)
    on_pytorch = _on_conda_pytorch(release, patch, compat)
    if wanted == CONDA_FORGE or (wanted == AUTO and on_forge):
        if not on_forge:
            have = ", ".join(release.conda_forge.patches) if release.conda_forge else "none"
            d.reasons.append(
                f"conda-forge has no pytorch {patch.version} (its {release.line} builds: {have})"
            )
            return None
        if wanted == AUTO:
            d.reasons.append(
                f"conda-forge has pytorch {patch.version}: every package comes from one channel "
                "that TUNA mirrors in full"
            )
        return _conda_forge_route(release, platform, compat)
    if not on_pytorch:
        last = compat.conda_pytorch_channel.last_release
        d.reasons.append(
            f"the pytorch conda channel stops at {last} and conda-forge has no pytorch "
            f"{patch.version}; install it with pip (--installer pip)"
        )
        return None
    if wanted == AUTO:
        d.reasons.append(
            f"conda-forge has no pytorch {patch.version}, so it comes from the pytorch channel "
            f"(frozen at {compat.conda_pytorch_channel.last_release})"
        )
    return _conda_pytorch_route(release, platform)


# ---------------------------------------------------------------- platform gates


def _machine(platform: str) -> str:
    return {"linux-64": "x86_64", "linux-aarch64": "aarch64", "osx-arm64": "arm64"}.get(
        platform, "x86_64"
    )


def _platform_refusal(
    request: Request, release: Release, patch: PatchRelease, facts: HostFacts
) -> str | None:
    platform = facts.platform
    if platform.startswith("osx"):
        floor = release.macos.get(_machine(platform))
        if floor is None:
            return f"torch {patch.version} has no macOS {_machine(platform)} build"
        if facts.macos and cuda_key(facts.macos) < cuda_key(floor):
            return (
                f"torch {patch.version} needs macOS {floor} or newer; this host has {facts.macos}"
            )
    if platform.startswith("linux") and request.installer == PIP and facts.glibc:
        floor = release.glibc.get(_machine(platform), release.glibc["x86_64"])
        if cuda_key(facts.glibc) < cuda_key(floor):
            return (
                f"torch {patch.version} wheels need glibc {floor} or newer; this host has "
                f"glibc {facts.glibc}"
            )
    return None


def _choose_python(
    request: Request, release: Release, patch: PatchRelease, facts: HostFacts, d: _Decision
) -> str | None:
    wanted = request.python or (facts.python if request.installer == PIP else None)
    supported = f"{release.python_min} to {release.python_max}"
    if wanted is None:
        d.reasons.append(
            f"Python {release.python_max}: the newest that torch {patch.version} supports "
            f"({supported})"
        )
        return release.python_max
    if not release.supports_python(wanted):
        d.reasons.append(f"torch {patch.version} supports Python {supported}, not {wanted}")
        return None
    return wanted


# ---------------------------------------------------------------- GPUs and the driver


def _driver_os(platform: str) -> str:
    return "windows" if platform == "win-64" else "linux"


def _driver_runs(
    variant: str, report: SmiReport, policy: str, driver_os: str, compat: Compat
) -> tuple[bool, str]:
    """Whether the host's driver runs a CUDA build, and the fact that decides it."""
    cuda = cuda_of_variant(variant)
    floor = compat.cuda[cuda]
    driver = report.driver_version
    if report.cuda_version and cuda_key(report.cuda_version) >= cuda_key(cuda):
        return True, f"the driver supports CUDA {report.cuda_version} >= {cuda}"
    if policy == "minor":
        minimum = floor.minor_compat[driver_os]
        if driver and minimum and driver_key(driver) >= driver_key(minimum):
            return True, (
                f"driver {driver} runs CUDA {cuda} under minor-version compatibility "
                f"(needs >= {minimum}; some features are limited)"
            )
        return (
            False,
            f"CUDA {cuda} needs driver >= {minimum} even under minor-version compatibility",
        )
    if report.cuda_version:
        return False, f"the driver supports CUDA {report.cuda_version} only, the build needs {cuda}"
    minimum = floor.full[driver_os]
    if driver and minimum and driver_key(driver) >= driver_key(minimum):
        return True, f"driver {driver} >= {minimum}, the full-support floor of CUDA {cuda}"
    return (
        False,
        f"CUDA {cuda} needs driver >= {minimum}; this host has {driver or 'no known driver'}",
    )


def _describe_gpu(gpu: Gpu) -> str:
    capability = f"sm_{gpu.capability.major}{gpu.capability.minor}" if gpu.capability else "sm_?"
    return f"GPU {gpu.index} {gpu.name} ({capability})"


def _uncovered_gpus(arch: ArchList | None, gpus: tuple[Gpu, ...]) -> list[Gpu]:
    if arch is None:
        return []
    return [gpu for gpu in gpus if gpu.capability and arch.kernel_for(gpu.capability) is None]


def _kernel_summary(arch: ArchList | None, gpus: tuple[Gpu, ...]) -> str:
    if arch is None:
        return "its arch list is not confirmed"
    kernels = sorted({arch.kernel_for(gpu.capability) for gpu in gpus if gpu.capability})
    return f"kernels {', '.join(kernels)} run on the GPUs"


def _first_release_covering(
    gpus: tuple[Gpu, ...], release: Release, request: Request, platform: str, compat: Compat
) -> str | None:
    for later in compat.releases_from(release.line):
        routes = (
            [_pip_route(later, platform)]
            if request.installer == PIP
            else [
                _conda_pytorch_route(later, platform),
                _conda_forge_route(later, platform, compat),
            ]
        )
        for route in routes:
            for variant, arch in route.cuda_builds.items():
                if arch is not None and not _uncovered_gpus(arch, gpus):
                    return f"{later.line} ({variant} from {route.description})"
    return None


# ---------------------------------------------------------------- choosing the variant


def _gpu_state(facts: HostFacts, request: Request, d: _Decision) -> tuple[SmiReport | None, bool]:
    """The usable nvidia-smi report, and whether planning must stop (refusal)."""
    smi = facts.nvidia_smi
    if smi is None or (
        isinstance(smi, SmiFailure) and smi.kind == SmiFailureKind.COMMAND_NOT_FOUND
    ):
        d.reasons.append("no nvidia-smi on this host: no NVIDIA driver, so the CPU build")
        return None, False
    if isinstance(smi, SmiFailure):
        if request.variant == CPU:
            d.warnings.append(f"nvidia-smi failed ({smi.kind.value}): {smi.meaning}")
            return None, False
        d.reasons.append(f"nvidia-smi failed ({smi.kind.value}): {smi.meaning}")
        return None, True
    if not smi.gpus:
        if request.variant == CPU:
            return None, False
        d.reasons.append(
            "the nvidia-smi output lists no GPU, so their compute capability cannot be checked; "
            "give the output of `nvidia-smi -q -x` or plain `nvidia-smi`"
        )
        return None, True
    return smi, False


def _unknown_capability(report: SmiReport) -> list[Gpu]:
    return [gpu for gpu in report.gpus if gpu.capability is None]


def _choose_variant(
    request: Request,
    release: Release,
    patch: PatchRelease,
    route: Route,
    report: SmiReport | None,
    platform: str,
    compat: Compat,
    d: _Decision,
) -> str | None:
    """The variant to install, or None to refuse. Appends the reasons for the choice."""
    if request.variant == CPU:
        d.reasons.append("the CPU build was requested")
        if report is not None:
            d.warnings.append(
                f"this host has {len(report.gpus)} GPU(s) that a CPU build will not use"
            )
        return CPU
    if report is None:
        if request.variant != AUTO:
            d.reasons.append(f"{request.variant} was requested but this host has no NVIDIA driver")
            return None
        return CPU
    gpus = report.gpus
    unknown = _unknown_capability(report)
    if unknown:
        names = "; ".join(_describe_gpu(gpu) for gpu in unknown)
        message = (
            f"the compute capability of {names} is unknown (not reported and not in the GPU "
            "catalog), so kernel coverage cannot be checked"
        )
        if request.variant == AUTO:
            d.reasons.append(
                message + "; name a variant with --variant or add the GPU to gpus.yaml"
            )
            return None
        d.warnings.append(message)
    driver_os = _driver_os(platform)
    if request.variant != AUTO:
        return _check_fixed_variant(request, release, patch, route, report, driver_os, compat, d)
    candidates = sorted(route.cuda_builds, key=lambda v: cuda_key(cuda_of_variant(v)), reverse=True)
    covering = []
    for variant in candidates:
        uncovered = _uncovered_gpus(route.cuda_builds[variant], gpus)
        if uncovered:
            d.reasons.append(
                f"not {variant}: it has no kernels for "
                f"{', '.join(_describe_gpu(g) for g in uncovered)} "
                f"(built for {route.cuda_builds[variant]})"
            )
        else:
            covering.append(variant)
    if not covering:
        first = _first_release_covering(gpus, release, request, platform, compat)
        gpu_text = ", ".join(_describe_gpu(g) for g in gpus)
        where = f"; the first release that does is {first}" if first else ""
        d.reasons.append(
            f"no CUDA build of torch {patch.version} from {route.description} has kernels or "
            f"PTX that run on {gpu_text}{where}"
        )
        return None
    for variant in covering:
        runs, why = _driver_runs(variant, report, request.driver_policy, driver_os, compat)
        if not runs:
            d.reasons.append(f"not {variant}: {why}")
            continue
        d.reasons.append(
            f"{variant}: the newest CUDA build of torch {patch.version} from {route.description} "
            f"that this host can use; {why}; {_kernel_summary(route.cuda_builds[variant], gpus)}"
        )
        newest = max(cuda_key(cuda_of_variant(v)) for v in candidates)
        if report.cuda_version and cuda_key(report.cuda_version) > newest:
            d.reasons.append(
                f"the driver supports CUDA {report.cuda_version}, newer than any build of "
                f"torch {patch.version}; a newer driver runs older CUDA builds, so "
                f"{variant} needs no driver change"
            )
        return variant
    d.reasons.append(
        f"CPU build: the driver ({report.driver_version or 'version unknown'}, CUDA "
        f"{report.cuda_version or 'unknown'}) is too old for every CUDA build of torch "
        f"{patch.version} that has kernels for this host's GPUs"
    )
    d.warnings.append(
        f"upgrade the NVIDIA driver to use the GPU(s): {covering[-1]} needs "
        f"{_driver_need(covering[-1], request.driver_policy, driver_os, compat)}"
    )
    return CPU


def _driver_need(variant: str, policy: str, driver_os: str, compat: Compat) -> str:
    cuda = cuda_of_variant(variant)
    floor = compat.cuda[cuda]
    if policy == "minor":
        return f"driver >= {floor.minor_compat[driver_os]}"
    return f"a driver that supports CUDA {cuda} (>= {floor.full[driver_os]})"


def _check_fixed_variant(
    request: Request,
    release: Release,
    patch: PatchRelease,
    route: Route,
    report: SmiReport,
    driver_os: str,
    compat: Compat,
    d: _Decision,
) -> str | None:
    variant = request.variant
    if variant not in route.cuda_builds:
        have = ", ".join(["cpu", *route.cuda_builds]) if route.cuda_builds else "cpu"
        d.reasons.append(
            f"torch {patch.version} from {route.description} has no {variant} build (it has {have})"
        )
        return None
    uncovered = _uncovered_gpus(route.cuda_builds[variant], report.gpus)
    if uncovered:
        d.reasons.append(
            f"{variant} has no kernels for {', '.join(_describe_gpu(g) for g in uncovered)} "
            f"(built for {route.cuda_builds[variant]})"
        )
        return None
    runs, why = _driver_runs(variant, report, request.driver_policy, driver_os, compat)
    if not runs:
        d.reasons.append(f"{variant} was requested but {why}")
        return None
    d.reasons.append(
        f"{variant} was requested; {why}; "
        f"{_kernel_summary(route.cuda_builds[variant], report.gpus)}"
    )
    return variant


# ---------------------------------------------------------------- pins and sources


def _python_tag(python: str, dotted: bool) -> str:
    return python if dotted else python.replace(".", "")


def _pip_pins(
    request: Request,
    release: Release,
    patch: PatchRelease,
    variant: str,
    platform: str,
    catalog: MirrorCatalog,
    d: _Decision,
) -> tuple[list[PackagePin], str, tuple[str, str] | None]:
    mirror = catalog[request.mirror]
    if mirror.pypi is None:
        raise RequestError(f"mirror {mirror.name!r} has no PyPI mirror")
    default = release.aarch64_default if platform == "linux-aarch64" else release.pypi_default
    if platform in ("win-64",) or platform.startswith("osx"):
        default = CPU
    from_pypi = variant == default
    wheel_index = None
    if from_pypi:
        source, url, label = PIP, mirror.pypi, ""
        d.reasons.append(
            f"{variant} is the default build on PyPI for {platform}, so every package comes "
            f"from {mirror.name}'s PyPI ({mirror.pypi})"
        )
    else:
        wheels = catalog[request.wheel_mirror]
        if wheels.pytorch_wheels is None:
            choices = ", ".join(catalog.wheel_mirrors())
            raise RequestError(
                f"mirror {wheels.name!r} has no PyTorch wheel index; use --wheel-mirror with "
                f"one of {choices}"
            )
        source, url, label = "pytorch-wheels", wheels.pytorch_wheels.url(variant), f"+{variant}"
        wheel_index = (wheels.pytorch_wheels.layout, url)
        d.reasons.append(
            f"PyPI (and so {mirror.name}) holds only the {default} build of torch "
            f"{patch.version}; the {variant} wheels come from {wheels.name}'s mirror of the "
            f"PyTorch wheel index ({url}), their dependencies from {mirror.name}'s PyPI"
        )
        if not wheels.confirmed:
            d.warnings.append(
                f"{wheels.name}'s PyTorch wheel mirror is not confirmed by an official page; "
                "labtorch pins the full local label so that nothing else can satisfy it"
            )
    pins = [PackagePin("torch", patch.version + label, None, source, url)]
    for name in ("torchvision", "torchaudio"):
        version = getattr(patch, name)
        if version is None:
            d.warnings.append(f"no {name} release pairs with torch {patch.version}; not installed")
            continue
        pins.append(PackagePin(name, version + label, None, source, url))
    return pins, mirror.pypi, wheel_index


def _conda_pytorch_pins(
    release: Release,
    patch: PatchRelease,
    variant: str,
    python: str,
    platform: str,
    mirror: Mirror,
    catalog: MirrorCatalog,
    compat: Compat,
    d: _Decision,
) -> tuple[list[PackagePin], list[str]]:
    channel = compat.conda_pytorch_channel
    formats = channel.pytorch_build
    url = mirror.channel_url(CONDA_PYTORCH)
    companions = release.conda_pytorch.companions.get(patch.version, patch)
    fields = {"python": python, "number": channel.build_number}
    if variant == CPU:
        build = formats["osx" if platform.startswith("osx") else "cpu"].format(**fields)
    else:
        cuda = cuda_of_variant(variant)
        cudnn = release.conda_pytorch.cudnn[variant]
        build = formats["cuda"].format(cuda=cuda, cudnn=cudnn, **fields)
        if release.is_unconfirmed(f"conda_pytorch.cudnn.{variant}"):
            d.warnings.append(
                f"the cuDNN part of the build string (cudnn{cudnn}) is not confirmed by the "
                f"reference; check it with `conda search -c {url} pytorch={patch.version}`"
            )
    pins = [PackagePin("pytorch", patch.version, build, CONDA_PYTORCH, url)]
    for name in ("torchvision", "torchaudio"):
        version = getattr(companions, name)
        if version is not None:
            pins.append(PackagePin(name, version, None, CONDA_PYTORCH, url))
    channels = [CONDA_PYTORCH]
    if variant == CPU:
        pins.append(PackagePin("cpuonly", "2.0", None, CONDA_PYTORCH, url))
    else:
        pins.append(PackagePin("pytorch-cuda", cuda, None, CONDA_PYTORCH, url))
        nvidia = catalog.mirror_for_channel(NVIDIA, mirror.name)
        channels.append(NVIDIA)
        where = f"{nvidia.name}'s mirror ({nvidia.channel_url(NVIDIA)})" if nvidia else "upstream"
        if not mirror.carries(NVIDIA):
            d.warnings.append(
                f"pytorch-cuda pulls its CUDA libraries from the nvidia channel, which "
                f"{mirror.name} does not mirror; labtorch takes them from {where}"
            )
    channels.append(DEFAULTS)
    d.reasons.append(
        f"pytorch {patch.version} build {build} from the pytorch channel ({url}); "
        "the exact build string keeps the solver from falling back to another variant"
    )
    return pins, channels


def _conda_forge_pins(
    patch: PatchRelease,
    variant: str,
    python: str,
    mirror: Mirror,
    compat: Compat,
    d: _Decision,
) -> tuple[list[PackagePin], list[str]]:
    formats = compat.conda_forge.pytorch_build
    url = mirror.channel_url(CONDA_FORGE)
    python_nodot = _python_tag(python, dotted=False)
    if variant == CPU:
        build = formats["cpu"].format(python_nodot=python_nodot)
    else:
        cuda = cuda_of_variant(variant)
        build = formats["cuda"].format(cuda_nodot=cuda.replace(".", ""), python_nodot=python_nodot)
    pins = [PackagePin("pytorch", patch.version, build, CONDA_FORGE, url)]
    for name in ("torchvision", "torchaudio"):
        version = getattr(patch, name)
        if version is not None:
            pins.append(PackagePin(name, version, None, CONDA_FORGE, url))
    if variant != CPU:
        pins.append(PackagePin("cuda-version", cuda, None, CONDA_FORGE, url))
        d.warnings.append(
            "conda-forge's CUDA build needs the __cuda virtual package: solving on a host "
            f"without a working driver needs CONDA_OVERRIDE_CUDA={cuda}"
        )
    d.reasons.append(
        f"pytorch {patch.version} build {build} from conda-forge ({url}); the channel's "
        "repodata fixes the hash part of the build string"
    )
    return pins, [CONDA_FORGE]


def _toolkit_pins(
    request: Request, variant: str, mirror: Mirror, catalog: MirrorCatalog, d: _Decision
) -> list[PackagePin]:
    if not request.toolkit:
        return []
    if variant == CPU:
        d.warnings.append(
            "a CUDA toolkit was asked for, but the plan is a CPU build: none installed"
        )
        return []
    cuda = cuda_of_variant(variant)
    major = cuda.split(".")[0]
    if request.installer == PIP:
        pin = PackagePin(f"nvidia-cuda-nvcc-cu{major}", f"{cuda}.*", None, PIP, mirror.pypi or "")
        d.reasons.append(f"nvcc {cuda} from PyPI ({pin.name}) to match the build's CUDA")
        return [pin]
    if cuda_key(cuda) >= (12, 0):
        url = mirror.channel_url(CONDA_FORGE)
        d.reasons.append(f"nvcc {cuda} from conda-forge (cuda-nvcc, cuda-version={cuda})")
        return [PackagePin("cuda-nvcc", f"{cuda}.*", None, CONDA_FORGE, url)]
    nvidia = catalog.mirror_for_channel(NVIDIA, mirror.name)
    url = nvidia.channel_url(NVIDIA) if nvidia else "https://conda.anaconda.org/nvidia"
    d.reasons.append(f"nvcc {cuda} from the nvidia channel (conda-forge has no nvcc for CUDA 11)")
    return [PackagePin("cuda-nvcc", f"{cuda}.*", None, NVIDIA, url)]


def _route_warnings(
    release: Release, variant: str, route: Route, compat: Compat, d: _Decision
) -> None:
    if variant == CPU:
        return
    if route.kind == PIP and release.is_unconfirmed("variants", f"variants.{variant}"):
        d.warnings.append(
            f"the reference marks torch {release.line}'s {variant} build (or its arch list) as "
            "unconfirmed"
        )
    if route.cuda_builds.get(variant) is None:
        d.warnings.append(
            f"the arch list of {route.description}'s {variant} build is not confirmed; "
            "labtorch could not check its kernels against the GPUs"
        )
    floor = compat.cuda[cuda_of_variant(variant)]
    if floor.unconfirmed:
        d.warnings.append(
            f"the driver floor of CUDA {floor.cuda} ({', '.join(sorted(floor.unconfirmed))}) "
            "is not confirmed"
        )


def _channel_urls(channels: list[str], mirror: Mirror, catalog: MirrorCatalog) -> tuple[str, ...]:
    """The mirror URLs of the plan's channels, in order; ``defaults`` expands to all of its."""
    urls: list[str] = []
    for channel in channels:
        if channel == DEFAULTS:
            urls.extend(mirror.default_channels)
            continue
        carrier = catalog.mirror_for_channel(channel, mirror.name)
        urls.append(
            carrier.channel_url(channel) if carrier else f"https://conda.anaconda.org/{channel}"
        )
    return tuple(urls)


# ---------------------------------------------------------------- the entry point


def plan_for_host(
    facts: HostFacts, request: Request, compat: Compat, catalog: MirrorCatalog
) -> Plan:
    """Decide the PyTorch build for one host. Raises RequestError for a malformed request."""
    _check_request(request, facts, compat)
    release, patch = _find_release(request, compat)
    mirror = _check_mirrors(request, catalog)
    d = _Decision()
    about = {
        "torch_release": patch.version,
        "installer": request.installer,
        "platform": facts.platform,
    }

    def refuse(python: str | None = None) -> Plan:
        return Plan(
            refused=True,
            python=python,
            reasons=tuple(d.reasons),
            warnings=tuple(d.warnings),
            **about,
        )

    problem = _platform_refusal(request, release, patch, facts)
    if problem:
        d.reasons.append(problem)
        return refuse()
    python = _choose_python(request, release, patch, facts, d)
    if python is None:
        return refuse()
    route = _choose_route(request, release, patch, facts.platform, compat, d)
    if route is None:
        return refuse(python)
    report, stop = _gpu_state(facts, request, d)
    if stop:
        return refuse(python)
    variant = _choose_variant(request, release, patch, route, report, facts.platform, compat, d)
    if variant is None:
        return refuse(python)
    _route_warnings(release, variant, route, compat, d)

    index_url = None
    wheel_index = None
    try:
        if route.kind == PIP:
            pins, index_url, wheel_index = _pip_pins(
                request, release, patch, variant, facts.platform, catalog, d
            )
            channels: list[str] = []
        elif route.kind == CONDA_PYTORCH:
            pins, channels = _conda_pytorch_pins(
                release, patch, variant, python, facts.platform, mirror, catalog, compat, d
            )
        else:
            pins, channels = _conda_forge_pins(patch, variant, python, mirror, compat, d)
    except NotMirrored as exc:
        raise RequestError(f"{exc}, which this plan needs; choose a mirror that does") from None
    try:
        toolkit = _toolkit_pins(request, variant, mirror, catalog, d)
    except NotMirrored as exc:
        d.warnings.append(f"no CUDA toolkit: {exc}")
        toolkit = []
    if toolkit and toolkit[0].source not in channels and route.kind != PIP:
        channels.insert(-1 if DEFAULTS in channels else len(channels), toolkit[0].source)
    return Plan(
        refused=False,
        variant=variant,
        cuda=cuda_of_variant(variant),
        python=python,
        packages=tuple(pins),
        toolkit=tuple(toolkit),
        channels=tuple(channels),
        channel_urls=_channel_urls(channels, mirror, catalog),
        index_url=index_url,
        wheel_index=wheel_index,
        reasons=tuple(d.reasons),
        warnings=tuple(d.warnings),
        **about,
    )
