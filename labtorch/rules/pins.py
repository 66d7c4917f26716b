"""The exact pins of a plan and where each comes from on the mirror (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from labtorch.data.compat import CPU, Compat, PatchRelease, Release, cuda_key, cuda_of_variant
from labtorch.data.mirrors import DEFAULTS, Mirror, MirrorCatalog, NotMirrored
from labtorch.rules.decision import Decision
from labtorch.rules.model import (
    CONDA_FORGE,
    CONDA_PYTORCH,
    NVIDIA,
    PIP,
    PackagePin,
    Request,
    RequestError,
)
from labtorch.rules.routes import Route


def _python_tag(python: str, dotted: bool) -> str:
    return python if dotted else python.replace(".", "")


def pip_pins(
    request: Request,
    release: Release,
    patch: PatchRelease,
    variant: str,
    platform: str,
    catalog: MirrorCatalog,
    d: Decision,
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


def conda_pytorch_pins(
    release: Release,
    patch: PatchRelease,
    variant: str,
    python: str,
    platform: str,
    mirror: Mirror,
    catalog: MirrorCatalog,
    compat: Compat,
    d: Decision,
) -> tuple[list[PackagePin], list[str]]:
    channel = compat.conda_pytorch_channel
    url = mirror.channel_url(CONDA_PYTORCH)
    companions = release.conda_pytorch.companions.get(patch.version, patch)
    fields = {"python": python, "number": channel.build_number}
    if variant == CPU:
        kind = "osx" if platform.startswith("osx") else "cpu"
        build = channel.build_format(kind, platform).format(**fields)
    else:
        cuda = cuda_of_variant(variant)
        cudnn = release.conda_pytorch.cudnn[variant]
        build = channel.build_format("cuda", platform).format(
            cuda=cuda, cudnn=cudnn, cudnn_major=cudnn.split(".")[0], **fields
        )
        if release.is_unconfirmed(f"conda_pytorch.cudnn.{variant}"):
            d.warnings.append(
                f"the cuDNN part of the build string (cudnn{cudnn}) is not confirmed by the "
                f"reference; check it with `conda search -c {url} pytorch={patch.version}`"
            )
    pins = [PackagePin("pytorch", patch.version, build, CONDA_PYTORCH, url)]
    for name in ("torchvision", "torchaudio"):
        version = getattr(companions, name)
        if version is None:
            continue
        companion = None
        if channel.companion_build:
            companion = channel.companion_build.format(
                python_nodot=_python_tag(python, dotted=False), variant=variant
            )
        pins.append(PackagePin(name, version, companion, CONDA_PYTORCH, url))
    channels = [CONDA_PYTORCH]
    if variant == CPU:
        pins.append(PackagePin("cpuonly", "2.0", None, CONDA_PYTORCH, url))
    else:
        pins.append(PackagePin("pytorch-cuda", cuda, None, CONDA_PYTORCH, url))
        nvidia = catalog.mirror_for_channel(NVIDIA, mirror.name)
        channels.append(NVIDIA)
        where = f"{nvidia.name}'s mirror ({nvidia.channel_url(NVIDIA)})" if nvidia else "upstream"
        major, minor = cuda_key(cuda)
        d.reasons.append(
            f"pytorch-cuda={cuda} brings its CUDA libraries from the nvidia channel (here "
            f'{where}); without that channel conda fails with "nothing provides cuda-cudart '
            f'>={cuda},<{major}.{minor + 1} needed by pytorch-cuda-{cuda}-..."'
        )
        if not mirror.carries(NVIDIA):
            d.warnings.append(
                f"pytorch-cuda pulls its CUDA libraries from the nvidia channel, which "
                f"{mirror.name} does not mirror; labtorch takes them from {where}"
            )
    channels.append(DEFAULTS)
    d.reasons.append(
        f"pytorch {patch.version} build {build} from the pytorch channel ({url}); "
        "the exact build strings (torchvision and torchaudio too) keep the solver from falling "
        "back to another variant"
    )
    return pins, channels


def conda_forge_pins(
    patch: PatchRelease,
    variant: str,
    python: str,
    mirror: Mirror,
    compat: Compat,
    d: Decision,
    tegra: bool = False,
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
    line = ".".join(patch.version.split(".")[:2])
    for name in ("torchvision", "torchaudio"):
        version = getattr(patch, name)
        if version is not None:
            pins.append(PackagePin(name, version, None, CONDA_FORGE, url))
            if name == "torchaudio" and not version.startswith(line + "."):
                d.warnings.append(
                    f"torchaudio {version} (the last torchaudio) beside pytorch {patch.version} "
                    "is confirmed for the PyPI wheels only; whether conda-forge's torchaudio "
                    f"{version} accepts this pytorch is not"
                )
    if variant != CPU:
        pins.append(PackagePin("cuda-version", cuda, None, CONDA_FORGE, url))
        if tegra and cuda_key(cuda) < (13, 0):
            # The Jetson builds share the build string; arm-variant selects them (SBSA is the
            # default): conda-forge's arm-variant package, and the feedstock's
            # `arm-variant * {{ arm_variant_type }}` requirement.
            pins.append(PackagePin("arm-variant", "*", "tegra", CONDA_FORGE, url))
            d.reasons.append(
                "arm-variant=*=tegra selects conda-forge's Jetson build, which shares its build "
                "string with the SBSA one"
            )
        d.warnings.append(
            "conda-forge's CUDA build needs the __cuda virtual package: solving on a host "
            f"without a working driver needs CONDA_OVERRIDE_CUDA={cuda}"
        )
    d.reasons.append(
        f"pytorch {patch.version} build {build} from conda-forge ({url}); the channel's "
        "repodata fixes the hash part of the build string"
    )
    return pins, [CONDA_FORGE]


def toolkit_pins(
    request: Request, variant: str, mirror: Mirror, catalog: MirrorCatalog, d: Decision
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


def release_warnings(release: Release, patch: PatchRelease, python: str, d: Decision) -> None:
    """Warnings for facts of the release itself that no primary source confirms."""
    if release.is_unconfirmed(f"patches.{patch.version}"):
        d.warnings.append(
            f"torch {patch.version} is not confirmed by a primary source (release notes, "
            "RELEASE.md, build records): its builds and companions are labtorch's best reading"
        )
    else:
        for name in ("torchvision", "torchaudio"):
            if release.is_unconfirmed(f"patches.{patch.version}.{name}"):
                d.warnings.append(
                    f"the {name} release that pairs with torch {patch.version} is not confirmed"
                )
    if release.is_unconfirmed("python"):
        d.warnings.append(
            f"the Pythons torch {release.line} supports (here {python}) are not confirmed"
        )


def route_warnings(
    release: Release,
    variant: str,
    route: Route,
    compat: Compat,
    d: Decision,
    platform: str = "linux-64",
) -> None:
    if variant == CPU:
        return
    if route.kind == PIP and release.is_unconfirmed("variants", f"variants.{variant}"):
        d.warnings.append(
            f"the reference marks torch {release.line}'s {variant} build (or its arch list) as "
            "unconfirmed"
        )
    if (
        route.kind == PIP
        and platform == "win-64"
        and release.is_unconfirmed(f"windows.variants.{variant}")
    ):
        d.warnings.append(
            f"the arch list of torch {release.line}'s Windows {variant} wheels is not confirmed "
            "for this release"
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


def channel_urls(channels: list[str], mirror: Mirror, catalog: MirrorCatalog) -> tuple[str, ...]:
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


@dataclass(frozen=True)
class PinSet:
    """A plan's pins and where they come from: conda channels, or a PyPI index and wheel page."""

    packages: tuple[PackagePin, ...]
    toolkit: tuple[PackagePin, ...]
    channels: tuple[str, ...] = ()
    index_url: str | None = None
    wheel_index: tuple[str, str] | None = None


def pins_and_sources(
    request: Request,
    release: Release,
    patch: PatchRelease,
    route: Route,
    variant: str,
    python: str,
    platform: str,
    catalog: MirrorCatalog,
    compat: Compat,
    d: Decision,
) -> PinSet:
    """The route's pins for ``variant``, the toolkit's, and the channels or indexes they need.

    RequestError when the mirror lacks what the route needs.
    """
    mirror = catalog[request.mirror]
    index_url = None
    wheel_index = None
    try:
        if route.kind == PIP:
            pins, index_url, wheel_index = pip_pins(
                request, release, patch, variant, platform, catalog, d
            )
            channels: list[str] = []
        elif route.kind == CONDA_PYTORCH:
            pins, channels = conda_pytorch_pins(
                release, patch, variant, python, platform, mirror, catalog, compat, d
            )
        else:
            pins, channels = conda_forge_pins(
                patch, variant, python, mirror, compat, d, tegra=route.tegra
            )
    except NotMirrored as exc:
        raise RequestError(f"{exc}, which this plan needs; choose a mirror that does") from None
    try:
        toolkit = toolkit_pins(request, variant, mirror, catalog, d)
    except NotMirrored as exc:
        d.warnings.append(f"no CUDA toolkit: {exc}")
        toolkit = []
    if toolkit and toolkit[0].source not in channels and route.kind != PIP:
        channels.insert(-1 if DEFAULTS in channels else len(channels), toolkit[0].source)
    return PinSet(tuple(pins), tuple(toolkit), tuple(channels), index_url, wheel_index)
