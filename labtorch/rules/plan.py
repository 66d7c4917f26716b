"""The rules engine: for one host and one pinned PyTorch release, which build, from where, and why.

Pure: facts and a request in, a :class:`Plan` out. ``auto`` picks the newest CUDA variant that
the driver runs and that has kernels for every GPU of the host; a GPU host gets the CPU build only
with a stated reason. Every decision is explained in ``Plan.reasons``.
"""

from __future__ import annotations

from labtorch.data.compat import CPU, Compat, PatchRelease, Release, cuda_key, cuda_of_variant
from labtorch.data.mirrors import Mirror, MirrorCatalog
from labtorch.facts.platform import platform_machine
from labtorch.rules.decision import Decision
from labtorch.rules.model import (
    AUTO,
    CONDA_CHANNELS,
    CONDA_FORGE,
    DRIVER_POLICIES,
    INSTALLERS,
    PIP,
    PLATFORMS,
    HostFacts,
    Plan,
    Request,
    RequestError,
)
from labtorch.rules.pins import channel_urls, pins_and_sources, release_warnings, route_warnings
from labtorch.rules.routes import choose_route, conda_forge_route, is_tegra
from labtorch.rules.variant import choose_variant, usable_gpu_report


def _check_request(request: Request, facts: HostFacts, compat: Compat) -> None:
    if request.installer not in INSTALLERS:
        raise RequestError(f"unknown installer {request.installer!r}; use conda or pip")
    if request.driver_policy not in DRIVER_POLICIES:
        raise RequestError(
            f"unknown driver policy {request.driver_policy!r}; use {', '.join(DRIVER_POLICIES)}"
        )
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


def _platform_refusal(
    request: Request, release: Release, patch: PatchRelease, facts: HostFacts
) -> str | None:
    platform = facts.platform
    if platform.startswith("osx"):
        floor = release.macos.get(platform_machine(platform))
        if floor is None:
            return f"torch {patch.version} has no macOS {platform_machine(platform)} build"
        if facts.macos and cuda_key(facts.macos) < cuda_key(floor):
            return (
                f"torch {patch.version} needs macOS {floor} or newer; this host has {facts.macos}"
            )
    if platform.startswith("linux") and request.installer == PIP and facts.glibc:
        floor = release.glibc.get(platform_machine(platform), release.glibc["x86_64"])
        if cuda_key(facts.glibc) < cuda_key(floor):
            return (
                f"torch {patch.version} wheels need glibc {floor} or newer; this host has "
                f"glibc {facts.glibc}"
            )
    return None


def _choose_python(
    request: Request, release: Release, patch: PatchRelease, facts: HostFacts, d: Decision
) -> str | None:
    wanted = request.python or (facts.python if request.installer == PIP else None)
    newest = release.python_max_for(facts.platform, request.installer)
    supported = f"{release.python_min} to {newest}"
    if wanted is None:
        # conda makes the env's Python: the one at hand (``labtorch plan`` run on the machine)
        # when the release supports it, else the newest it supports.
        local = facts.python
        if local and release.supports_python(local):
            d.reasons.append(
                f"Python {local}: this machine's Python, which torch {patch.version} supports "
                f"({release.python_min} to {release.python_max})"
            )
            return local
        there = f"this machine has Python {local}, which it does not support; " if local else ""
        d.reasons.append(
            f"Python {release.python_max}: {there}the newest that torch {patch.version} "
            f"supports ({release.python_min} to {release.python_max})"
        )
        return release.python_max
    if not release.supports_python(wanted, facts.platform, request.installer):
        d.reasons.append(f"torch {patch.version} supports Python {supported}, not {wanted}")
        return None
    if not release.supports_python(wanted):
        d.warnings.append(
            f"torch {patch.version} supports Python up to {release.python_max}; PyPI also has "
            f"Python {wanted} wheels for {facts.platform}, which its release notes do not list"
        )
    return wanted


def plan_for_host(
    facts: HostFacts, request: Request, compat: Compat, catalog: MirrorCatalog
) -> Plan:
    """Decide the PyTorch build for one host. Raises RequestError for a malformed request."""
    _check_request(request, facts, compat)
    release, patch = _find_release(request, compat)
    mirror = _check_mirrors(request, catalog)
    d = Decision()
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
    route = choose_route(request, release, patch, facts.platform, compat, d)
    if route is None:
        return refuse(python)
    report, stop = usable_gpu_report(facts, request, d)
    if stop:
        return refuse(python)
    if route.kind == CONDA_FORGE and report is not None and is_tegra(report.gpus, compat):
        route = conda_forge_route(release, facts.platform, compat, patch, tegra=True)
    variant = choose_variant(request, release, patch, route, report, facts.platform, compat, d)
    if variant is None:
        return refuse(python)
    release_warnings(release, patch, python, d)
    route_warnings(release, variant, route, compat, d, facts.platform)
    sources = pins_and_sources(
        request, release, patch, route, variant, python, facts.platform, catalog, compat, d
    )
    return Plan(
        refused=False,
        variant=variant,
        cuda=cuda_of_variant(variant),
        python=python,
        packages=sources.packages,
        toolkit=sources.toolkit,
        channels=sources.channels,
        channel_urls=channel_urls(sources.channels, mirror, catalog),
        index_url=sources.index_url,
        wheel_index=sources.wheel_index,
        reasons=tuple(d.reasons),
        warnings=tuple(d.warnings),
        **about,
    )
