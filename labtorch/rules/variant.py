"""Which variant a host gets: kernels for every GPU, a driver that runs the build (pure).

Detection (the nvidia-smi report) is the facts' job; this module decides from it, and says why.
"""

from __future__ import annotations

from labtorch.data.compat import (
    CPU,
    ArchList,
    Compat,
    PatchRelease,
    Release,
    cuda_key,
    cuda_of_variant,
)
from labtorch.data.gpus import Gpu
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport
from labtorch.rules.decision import Decision
from labtorch.rules.driver import driver_need, driver_os, driver_runs
from labtorch.rules.model import AUTO, PIP, HostFacts, Request
from labtorch.rules.routes import Route, conda_forge_route, conda_pytorch_route, pip_route


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
            [pip_route(later, platform)]
            if request.installer == PIP
            else [
                conda_pytorch_route(later, platform),
                conda_forge_route(later, platform, compat),
            ]
        )
        for route in routes:
            for variant, arch in route.cuda_builds.items():
                if arch is not None and not _uncovered_gpus(arch, gpus):
                    return f"{later.line} ({variant} from {route.description})"
    return None


def usable_gpu_report(
    facts: HostFacts, request: Request, d: Decision
) -> tuple[SmiReport | None, bool]:
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


def choose_variant(
    request: Request,
    release: Release,
    patch: PatchRelease,
    route: Route,
    report: SmiReport | None,
    platform: str,
    compat: Compat,
    d: Decision,
) -> str | None:
    """The variant to install, or None to refuse. Appends the reasons for the choice."""
    if request.variant == CPU:
        return _requested_cpu(report, d)
    if report is None:
        if request.variant != AUTO:
            d.reasons.append(f"{request.variant} was requested but this host has no NVIDIA driver")
            return None
        return CPU
    if not _capabilities_known(report, request, d):
        return None
    os_name = driver_os(platform)
    if request.variant != AUTO:
        return _check_fixed_variant(request, patch, route, report, os_name, compat, d)
    covering = _covering_variants(route, report.gpus, d)
    if not covering:
        _explain_no_coverage(report.gpus, release, patch, route, request, platform, compat, d)
        return None
    for variant in covering:
        runs, why = driver_runs(variant, report, request.driver_policy, os_name, compat)
        if runs:
            _explain_choice(variant, why, report, patch, route, d)
            return variant
        d.reasons.append(f"not {variant}: {why}")
    return _cpu_for_old_driver(covering, report, request, patch, os_name, compat, d)


def _requested_cpu(report: SmiReport | None, d: Decision) -> str:
    d.reasons.append("the CPU build was requested")
    if report is not None:
        d.warnings.append(f"this host has {len(report.gpus)} GPU(s) that a CPU build will not use")
    return CPU


def _capabilities_known(report: SmiReport, request: Request, d: Decision) -> bool:
    """False (refuse) when a GPU's compute capability is unknown and the variant is ``auto``;
    a named variant goes on with a warning."""
    unknown = [gpu for gpu in report.gpus if gpu.capability is None]
    if not unknown:
        return True
    names = "; ".join(_describe_gpu(gpu) for gpu in unknown)
    message = (
        f"the compute capability of {names} is unknown (not reported and not in the GPU "
        "catalog), so kernel coverage cannot be checked"
    )
    if request.variant == AUTO:
        d.reasons.append(message + "; name a variant with --variant or add the GPU to gpus.yaml")
        return False
    d.warnings.append(message)
    return True


def _newest_first(variants) -> list[str]:
    return sorted(variants, key=lambda v: cuda_key(cuda_of_variant(v)), reverse=True)


def _covering_variants(route: Route, gpus: tuple[Gpu, ...], d: Decision) -> list[str]:
    """The route's CUDA variants with kernels for every GPU, newest first; each other one is
    named with the GPUs it lacks."""
    covering = []
    for variant in _newest_first(route.cuda_builds):
        uncovered = _uncovered_gpus(route.cuda_builds[variant], gpus)
        if uncovered:
            d.reasons.append(
                f"not {variant}: it has no kernels for "
                f"{', '.join(_describe_gpu(g) for g in uncovered)} "
                f"(built for {route.cuda_builds[variant]})"
            )
        else:
            covering.append(variant)
    return covering


def _explain_no_coverage(
    gpus: tuple[Gpu, ...],
    release: Release,
    patch: PatchRelease,
    route: Route,
    request: Request,
    platform: str,
    compat: Compat,
    d: Decision,
) -> None:
    first = _first_release_covering(gpus, release, request, platform, compat)
    gpu_text = ", ".join(_describe_gpu(g) for g in gpus)
    where = f"; the first release that does is {first}" if first else ""
    d.reasons.append(
        f"no CUDA build of torch {patch.version} from {route.description} has kernels or "
        f"PTX that run on {gpu_text}{where}"
    )


def _explain_choice(
    variant: str, why: str, report: SmiReport, patch: PatchRelease, route: Route, d: Decision
) -> None:
    d.reasons.append(
        f"{variant}: the newest CUDA build of torch {patch.version} from {route.description} "
        f"that this host can use; {why}; "
        f"{_kernel_summary(route.cuda_builds[variant], report.gpus)}"
    )
    newest = max(cuda_key(cuda_of_variant(v)) for v in route.cuda_builds)
    if report.cuda_version and cuda_key(report.cuda_version) > newest:
        d.reasons.append(
            f"the driver supports CUDA {report.cuda_version}, newer than any build of "
            f"torch {patch.version}; a newer driver runs older CUDA builds, so "
            f"{variant} needs no driver change"
        )


def _cpu_for_old_driver(
    covering: list[str],
    report: SmiReport,
    request: Request,
    patch: PatchRelease,
    os_name: str,
    compat: Compat,
    d: Decision,
) -> str:
    d.reasons.append(
        f"CPU build: the driver ({report.driver_version or 'version unknown'}, CUDA "
        f"{report.cuda_version or 'unknown'}) is too old for every CUDA build of torch "
        f"{patch.version} that has kernels for this host's GPUs"
    )
    d.warnings.append(
        f"upgrade the NVIDIA driver to use the GPU(s): {covering[-1]} needs "
        f"{driver_need(covering[-1], request.driver_policy, os_name, compat)}"
    )
    return CPU


def _check_fixed_variant(
    request: Request,
    patch: PatchRelease,
    route: Route,
    report: SmiReport,
    os_name: str,
    compat: Compat,
    d: Decision,
) -> str | None:
    """The requested variant, or None (refuse) with the reason it cannot run here."""
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
    runs, why = driver_runs(variant, report, request.driver_policy, os_name, compat)
    if not runs:
        d.reasons.append(f"{variant} was requested but {why}")
        return None
    d.reasons.append(
        f"{variant} was requested; {why}; "
        f"{_kernel_summary(route.cuda_builds[variant], report.gpus)}"
    )
    return variant
