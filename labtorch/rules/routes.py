"""Where the builds of a release come from, per installer and platform: PyPI and the PyTorch wheel
indexes, the old ``pytorch`` conda channel, or conda-forge (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from packaging.version import Version

from labtorch.data.compat import ArchList, Compat, PatchRelease, Release, cuda_of_variant
from labtorch.rules.decision import Decision
from labtorch.rules.model import AUTO, CONDA_FORGE, CONDA_PYTORCH, PIP, Request


@dataclass(frozen=True)
class Route:
    """Where builds of one release come from for one installer and platform."""

    kind: str
    description: str
    cuda_builds: dict[str, ArchList | None] = field(default_factory=dict)


def pip_route(release: Release, platform: str) -> Route:
    if platform.startswith("osx"):
        return Route(PIP, "PyPI (macOS wheels are CPU/MPS only)")
    variants = release.aarch64_variants if platform == "linux-aarch64" else release.variants
    return Route(PIP, "the PyTorch wheels", dict(variants))


def conda_pytorch_route(release: Release, platform: str) -> Route:
    builds = release.conda_pytorch
    cuda_builds = {}
    if builds and platform in ("linux-64", "win-64"):
        cuda_builds = {variant: builds.arch.get(variant) for variant in builds.cudnn}
    return Route(CONDA_PYTORCH, "the pytorch conda channel", cuda_builds)


def conda_forge_route(release: Release, platform: str, compat: Compat) -> Route:
    builds = release.conda_forge
    variants = builds.variants.get(platform, ()) if builds else ()
    cuda_builds = {v: compat.conda_forge.arch.get(cuda_of_variant(v)) for v in variants}
    return Route(CONDA_FORGE, "conda-forge", cuda_builds)


def _on_conda_pytorch(release: Release, patch: PatchRelease, compat: Compat) -> bool:
    last = Version(compat.conda_pytorch_channel.last_release)
    return release.conda_pytorch is not None and Version(patch.version) <= last


def _on_conda_forge(release: Release, patch: PatchRelease) -> bool:
    return release.conda_forge is not None and patch.version in release.conda_forge.patches


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
        return conda_forge_route(release, platform, compat)
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
    return conda_pytorch_route(release, platform)
