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
from labtorch.rules.driver import (
    MINOR,
    STRICT,
    driver_need,
    driver_os,
    driver_runs,
    full_support_driver,
    runs_minor,
    runs_strict,
)
from labtorch.rules.model import AUTO, PIP, HostFacts, Request
from labtorch.rules.routes import (
    Route,
    conda_forge_route,
    conda_pytorch_route,
    is_tegra,
    pip_route,
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


def _jit_gpus(arch: ArchList | None, gpus: tuple[Gpu, ...]) -> list[tuple[Gpu, str]]:
    """The GPUs that would run ``arch`` only through PTX JIT, with the PTX they would use."""
    if arch is None:
        return []
    jit = []
    for gpu in gpus:
        if gpu.capability is None:
            continue
        kernel = arch.kernel_for(gpu.capability)
        if kernel and not kernel.startswith("sm_"):
            jit.append((gpu, kernel))
    return jit


def _first_release_covering(
    gpus: tuple[Gpu, ...], release: Release, request: Request, platform: str, compat: Compat
) -> str | None:
    tegra = is_tegra(gpus, compat)
    for later in compat.releases_from(release.line):
        routes = (
            [pip_route(later, platform)]
            if request.installer == PIP
            else [
                conda_pytorch_route(later, platform),
                conda_forge_route(later, platform, compat, tegra=tegra),
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
    if request.driver_policy == AUTO:
        return _choose_auto(covering, request, patch, route, report, os_name, compat, d)
    for variant in covering:
        runs, why = driver_runs(variant, report, request.driver_policy, os_name, compat)
        if runs:
            _explain_choice(variant, why, report, patch, route, d)
            if request.driver_policy == MINOR:
                _warn_minor_jit(variant, route, report, os_name, compat, d)
            return variant
        d.reasons.append(f"not {variant}: {why}")
    return _cpu_for_old_driver(covering, report, request, patch, os_name, compat, d)


def _choose_auto(
    covering: list[str],
    request: Request,
    patch: PatchRelease,
    route: Route,
    report: SmiReport,
    os_name: str,
    compat: Compat,
    d: Decision,
) -> str:
    """``auto``: the newest build the driver runs in full; else the newest that CUDA
    minor-version compatibility runs with compiled kernels for every GPU; else CPU."""
    refused = []
    for variant in covering:
        runs, why = runs_strict(variant, report, os_name, compat)
        if runs:
            _explain_choice(variant, why, report, patch, route, d)
            return variant
        refused.append(f"not {variant}: {why}")
    minor_refused = []
    for variant in covering:
        runs, why = runs_minor(variant, report, os_name, compat)
        if not runs:
            minor_refused.append(f"not {variant} under minor-version compatibility either: {why}")
            continue
        arch = route.cuda_builds[variant]
        if arch is None:
            minor_refused.append(
                f"not {variant} under minor-version compatibility: its arch list is not "
                "confirmed, so labtorch cannot tell whether a GPU would need a JIT"
            )
            continue
        jit = _jit_gpus(arch, report.gpus)
        if jit:
            names = ", ".join(f"{_describe_gpu(gpu)} would JIT {kernel}" for gpu, kernel in jit)
            minor_refused.append(
                f"not {variant} under minor-version compatibility: {names}, and an older "
                "driver cannot compile PTX from a newer CUDA"
            )
            continue
        _explain_minor_choice(variant, arch, covering, report, patch, route, os_name, compat, d)
        return variant
    d.reasons.extend(refused)
    d.reasons.extend(minor_refused)
    return _cpu_for_old_driver(covering, report, request, patch, os_name, compat, d)


def _explain_minor_choice(
    variant: str,
    arch: ArchList,
    covering: list[str],
    report: SmiReport,
    patch: PatchRelease,
    route: Route,
    os_name: str,
    compat: Compat,
    d: Decision,
) -> None:
    cuda = cuda_of_variant(variant)
    major = cuda.split(".")[0]
    minimum = compat.cuda[cuda].minor_compat[os_name]
    shown = report.cuda_version or "unknown"
    oldest = cuda_of_variant(covering[-1])
    kernels = sorted({arch.kernel_for(gpu.capability) for gpu in report.gpus if gpu.capability})
    d.reasons.append(
        f"no build of torch {patch.version} from {route.description} that has kernels for "
        f"these GPUs is as old as the driver's CUDA {shown} (the oldest is CUDA {oldest})"
    )
    d.reasons.append(
        f"{variant} through CUDA minor-version compatibility: driver "
        f"{report.driver_version} is at least {minimum}, so it runs any CUDA {major}.x build, "
        f"with a limited feature set; every GPU has its own compiled kernels in it "
        f"({', '.join(kernels)}), so nothing needs the JIT compilation of newer PTX that "
        "minor-version compatibility cannot do"
    )
    d.warnings.append(
        f"driver {report.driver_version} (CUDA {shown}) runs {variant} only through CUDA "
        f"minor-version compatibility, with a limited feature set; for full support install "
        f"driver {full_support_driver(variant, os_name, compat)}"
    )
    if route.tegra:
        d.warnings.append(
            "on a Jetson the driver comes with JetPack (L4T), and no primary source read for "
            "labtorch confirms minor-version compatibility there: upgrade JetPack to one whose "
            f"CUDA is {cuda} or newer if this build fails to initialise"
        )


def _warn_minor_jit(
    variant: str,
    route: Route,
    report: SmiReport,
    os_name: str,
    compat: Compat,
    d: Decision,
) -> None:
    """Under ``minor``, a build that runs only by minor-version compatibility and needs PTX
    JIT for a GPU is kept (the admin asked for it) but said to be likely to fail."""
    if runs_strict(variant, report, os_name, compat)[0]:
        return
    for gpu, kernel in _jit_gpus(route.cuda_builds.get(variant), report.gpus):
        d.warnings.append(
            f"{_describe_gpu(gpu)} would run {variant} through JIT compilation of {kernel}, "
            "which CUDA minor-version compatibility does not support: expect it to fail; "
            f"driver policy auto would not choose this build"
        )


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
    for variant, why in route.excluded.items():
        d.reasons.append(f"not {variant}: {why}")
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
    cuda = cuda_of_variant(variant)
    shown = report.cuda_version
    if not shown or cuda_key(shown) < cuda_key(cuda):
        return
    versions = [
        cuda_of_variant(v)
        for v in sorted(route.cuda_builds, key=lambda v: cuda_key(cuda_of_variant(v)))
    ]
    names = " and ".join([", ".join(versions[:-1]), versions[-1]] if versions[1:] else versions)
    newer = " (a newer driver runs older CUDA builds)" if cuda_key(shown) > cuda_key(cuda) else ""
    d.reasons.append(
        f"a driver that shows CUDA {shown} runs every build up to CUDA {shown}{newer}, so "
        f"{variant} (CUDA {cuda}) needs no driver change: the {names} in the build names are "
        "the CUDA the builds were made with, not a driver version they need"
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
    policy = STRICT if request.driver_policy == AUTO else request.driver_policy
    d.warnings.append(
        f"upgrade the NVIDIA driver to use the GPU(s): {covering[-1]} needs "
        f"{driver_need(covering[-1], policy, os_name, compat)}"
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
    policy = request.driver_policy
    runs, why = driver_runs(variant, report, STRICT if policy == AUTO else policy, os_name, compat)
    minor_only = False
    if not runs and policy == AUTO:
        minor, minor_why = runs_minor(variant, report, os_name, compat)
        jit = _jit_gpus(route.cuda_builds[variant], report.gpus)
        if minor and not jit and route.cuda_builds[variant] is not None:
            runs, why, minor_only = True, minor_why, True
        elif minor and jit:
            why += (
                f"; under minor-version compatibility {_describe_gpu(jit[0][0])} would need a "
                f"JIT of {jit[0][1]}, which an older driver cannot do"
            )
    if not runs:
        d.reasons.append(f"{variant} was requested but {why}")
        return None
    d.reasons.append(
        f"{variant} was requested; {why}; "
        f"{_kernel_summary(route.cuda_builds[variant], report.gpus)}"
    )
    if minor_only:
        d.warnings.append(
            f"driver {report.driver_version} (CUDA {report.cuda_version or 'unknown'}) runs "
            f"{variant} only through CUDA minor-version compatibility, with a limited feature "
            f"set; for full support install driver "
            f"{full_support_driver(variant, os_name, compat)}"
        )
    elif policy == MINOR:
        _warn_minor_jit(variant, route, report, os_name, compat, d)
    return variant
