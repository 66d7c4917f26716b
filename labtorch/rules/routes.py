"""Where the builds of a release come from, per installer and platform: PyPI and the PyTorch wheel
indexes, the old ``pytorch`` conda channel, or conda-forge (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.version import Version

from labtorch.data.compat import (
    ArchList,
    Compat,
    PatchRelease,
    Release,
    cuda_key,
    cuda_of_variant,
)
from labtorch.data.gpus import Gpu
from labtorch.rules.decision import Decision
from labtorch.rules.model import AUTO, CONDA_FORGE, CONDA_PYTORCH, PIP, Request


@dataclass(frozen=True)
class Route:
    """Where builds of one release come from for one installer and platform.

    ``excluded`` names builds the route has but that cannot run here, with the reason;
    ``tegra``: the conda-forge Jetson builds (``arm-variant=*=tegra``) stand in for CUDA 12.
    """

    kind: str
    description: str
    cuda_builds: dict[str, ArchList | None] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)
    tegra: bool = False


def pip_route(release: Release, platform: str) -> Route:
    if platform.startswith("osx"):
        return Route(PIP, "PyPI (macOS wheels are CPU/MPS only)")
    return Route(PIP, "the PyTorch wheels", release.wheel_variants(platform))


def conda_pytorch_route(release: Release, platform: str) -> Route:
    builds = release.conda_pytorch
    cuda_builds = {}
    if builds and platform in ("linux-64", "win-64"):
        cuda_builds = {variant: builds.arch.get(variant) for variant in builds.cudnn}
    return Route(CONDA_PYTORCH, "the pytorch conda channel", cuda_builds)


def is_tegra(gpus: Iterable[Gpu], compat: Compat) -> bool:
    """Whether every GPU is a Jetson (integrated, Tegra) GPU by its compute capability."""
    capabilities = [gpu.capability for gpu in gpus]
    tegra = compat.conda_forge.tegra_capabilities
    return bool(capabilities) and all(cc is not None and cc in tegra for cc in capabilities)


def _newest_forge_patch(release: Release, platform: str) -> str | None:
    builds = release.conda_forge
    if builds is None:
        return None
    have = [version for version in builds.patches if builds.has(version, platform)]
    return max(have, key=Version) if have else None


def conda_forge_route(
    release: Release,
    platform: str,
    compat: Compat,
    patch: PatchRelease | None = None,
    tegra: bool = False,
) -> Route:
    """conda-forge's builds of ``patch`` (default: the newest it has for ``platform``).

    Each CUDA variant takes the arch list of its newest build, the one a solver picks. On
    linux-aarch64 with Jetson GPUs (``tegra``), CUDA 12 builds are the tegra ones; the SBSA
    builds of CUDA 12 do not run on a Jetson.
    """
    builds = release.conda_forge
    version = patch.version if patch else _newest_forge_patch(release, platform)
    if builds is None or version is None:
        return Route(CONDA_FORGE, "conda-forge")
    tegra = tegra and platform == "linux-aarch64"
    tegra_builds = builds.tegra_for(version) if tegra else {}
    cuda_builds: dict[str, ArchList | None] = {}
    excluded = {}
    for variant in builds.variants_for(version, platform):
        cuda = cuda_of_variant(variant)
        if tegra and cuda_key(cuda) < (13, 0):
            if variant in tegra_builds:
                cuda_builds[variant] = tegra_builds[variant]
            else:
                excluded[variant] = (
                    f"conda-forge's linux-aarch64 {variant} build of pytorch {version} is for "
                    "SBSA servers and has no Jetson (tegra) twin; a Jetson's CUDA 12 stack does "
                    "not run SBSA builds"
                )
            continue
        group = builds.newest_group(version, platform, variant)
        override = group.arch.get((platform, variant)) if group else None
        cuda_builds[variant] = override or compat.conda_forge.arch.get(cuda)
    return Route(CONDA_FORGE, "conda-forge", cuda_builds, excluded, tegra and bool(tegra_builds))


def _on_conda_pytorch(release: Release, patch: PatchRelease, compat: Compat) -> bool:
    last = Version(compat.conda_pytorch_channel.last_release)
    return release.conda_pytorch is not None and Version(patch.version) <= last


def _on_conda_forge(release: Release, patch: PatchRelease, platform: str) -> bool:
    return release.conda_forge is not None and release.conda_forge.has(patch.version, platform)


def choose_route(
    request: Request,
    release: Release,
    patch: PatchRelease,
    platform: str,
    compat: Compat,
    d: Decision,
) -> Route | None:
    if request.installer == PIP:
        return pip_route(release, platform)
    wanted = request.conda_channel
    on_forge = _on_conda_forge(release, patch, platform)
    on_pytorch = _on_conda_pytorch(release, patch, compat)
    if wanted == CONDA_FORGE or (wanted == AUTO and on_forge):
        if not on_forge:
            forge = release.conda_forge
            have = ", ".join(v for v in forge.patches if forge.has(v, platform)) if forge else ""
            d.reasons.append(
                f"conda-forge has no pytorch {patch.version} for {platform} "
                f"(its {release.line} builds there: {have or 'none'})"
            )
            return None
        if wanted == AUTO:
            d.reasons.append(
                f"conda-forge has pytorch {patch.version} for {platform}: every package comes "
                "from one channel that TUNA mirrors in full"
            )
        return conda_forge_route(release, platform, compat, patch)
    if not on_pytorch:
        last = compat.conda_pytorch_channel.last_release
        d.reasons.append(
            f"the pytorch conda channel stops at {last} and conda-forge has no pytorch "
            f"{patch.version} for {platform}; install it with pip (--installer pip)"
        )
        return None
    if wanted == AUTO:
        d.reasons.append(
            f"conda-forge has no pytorch {patch.version} for {platform}, so it comes from the "
            f"pytorch channel (frozen at {compat.conda_pytorch_channel.last_release})"
        )
    return conda_pytorch_route(release, platform)
