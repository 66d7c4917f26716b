"""From a host's state and the admin's settings to the rules engine's inputs (pure)."""

from __future__ import annotations

from dataclasses import replace

from labtorch.data.mirrors import (
    MirrorCatalog,
    load_catalog,
    tuna_layout_mirror,
    wheels_only_mirror,
)
from labtorch.deploy.settings import Settings
from labtorch.facts.host_state import HostState
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport
from labtorch.rules.model import HostFacts, Plan, Request
from labtorch.rules.provenance import Origins
from labtorch.rules.verdict import Expectation

SITE_MIRROR = "site"
SITE_WHEELS = "site-wheels"


def gpu_state(host_state: HostState) -> SmiReport | SmiFailure | None:
    """nvidia-smi's answer, unless the loaded kernel module is not the driver nvidia-smi reports:
    then the driver was upgraded without a reboot, and CUDA will not initialise."""
    smi = host_state.nvidia_smi
    kernel = host_state.kernel_driver
    driver = smi.driver_version if isinstance(smi, SmiReport) else None
    if kernel and driver and kernel != driver:
        return SmiFailure(
            SmiFailureKind.NVML_MISMATCH,
            f"the loaded NVIDIA kernel module is {kernel} but the driver libraries are "
            f"{driver}: the driver was upgraded without a reboot; reboot the host",
            f"kernel module {kernel}, nvidia-smi driver {driver}",
        )
    return smi


def host_facts(host_state: HostState, settings: Settings) -> HostFacts:
    return HostFacts(
        platform=host_state.platform,
        glibc=host_state.glibc,
        python=host_state.python3 if settings.installer == "pip" else None,
        nvidia_smi=gpu_state(host_state),
    )


def fallback_wheels_url(settings: Settings, fallback_url: str) -> str | None:
    """The wheel page of a fallback given by its base URL: a fallback URL is a mirror laid out
    like the site's own, so when the site's wheel page (``wheel_mirror_url``) lives under the site
    mirror (``mirror_url``), the fallback's is the same path under the fallback's base. None when
    the site's wheel page is elsewhere: the fallback then has no wheel page of its own."""
    if not (settings.mirror_url and settings.wheel_mirror_url):
        return None
    site = settings.mirror_url.rstrip("/") + "/"
    if not settings.wheel_mirror_url.startswith(site):
        return None
    return fallback_url.rstrip("/") + "/" + settings.wheel_mirror_url[len(site) :]


def catalog_for(settings: Settings) -> MirrorCatalog:
    """The packaged mirror catalog, plus the site's own mirror when ``mirror_url`` is set, and
    each fallback given by its URL (named by that URL)."""
    catalog = load_catalog()
    if settings.mirror_url:
        catalog = catalog.with_mirror(
            tuna_layout_mirror(SITE_MIRROR, settings.mirror_url, settings.wheel_mirror_url)
        )
    elif settings.wheel_mirror_url:
        catalog = catalog.with_mirror(wheels_only_mirror(SITE_WHEELS, settings.wheel_mirror_url))
    for url in (entry for entry in settings.fallback_mirrors if "://" in entry):
        catalog = catalog.with_mirror(
            tuna_layout_mirror(url, url, fallback_wheels_url(settings, url))
        )
    return catalog


def request_for(settings: Settings) -> Request:
    mirror = SITE_MIRROR if settings.mirror_url else settings.mirror
    if settings.wheel_mirror_url:
        wheel_mirror = SITE_MIRROR if settings.mirror_url else SITE_WHEELS
    else:
        wheel_mirror = settings.wheel_mirror
    return Request(
        torch=settings.release,
        installer=settings.installer,
        variant=settings.variant,
        driver_policy=settings.driver_policy,
        toolkit=settings.toolkit,
        python=settings.python,
        conda_channel=settings.conda_channel,
        mirror=mirror,
        wheel_mirror=wheel_mirror,
    )


def fallback_requests(
    settings: Settings, request: Request, catalog: MirrorCatalog
) -> dict[str, Request]:
    """The request once per fallback mirror (a catalog name, or a URL named by itself), in order.

    A fallback that has a wheel page of its own (a mirror of the PyTorch wheel indexes, such as
    ``nju``, or a fallback URL laid out like the site mirror: ``fallback_wheels_url``) serves the
    wheels too, so that a primary whose wheel pages fail does not fail the fallback; the others
    use the primary's wheel page. A fallback URL's wheel page is inferred, not declared: on the
    pip route that fallback is tried once more with the primary's wheel page, right after, so
    that a fallback without the wheels does no worse than when it had no page of its own.
    """
    requests = {}
    for name in settings.fallback_mirrors:
        if not catalog[name].pytorch_wheels or name == request.wheel_mirror:
            requests[name] = replace(request, mirror=name)
            continue
        requests[name] = replace(request, mirror=name, wheel_mirror=name)
        if "://" in name and settings.installer == "pip":
            requests[f"{name} with the wheels of {request.wheel_mirror}"] = replace(
                request, mirror=name
            )
    return requests


def reusable_probe(host_state: HostState) -> dict | None:
    """The env's last probe, when neither its packages nor the loaded driver changed since."""
    cache = host_state.probe_cache
    if not cache or not host_state.env_listing:
        return None
    if tuple(cache.get("listing") or ()) != host_state.env_listing:
        return None
    if cache.get("kernel_driver") != host_state.kernel_driver:
        return None
    return cache


def expectation_for(
    plan: Plan, origins: Origins, smi: SmiReport | SmiFailure | None
) -> Expectation:
    """What the probe must find: the plan's build, on every GPU nvidia-smi listed, from the
    mirror or one of its fallbacks (an env a fallback served passes on every rerun).

    torch must see as many CUDA devices as nvidia-smi lists GPUs, unless a GPU is in MIG mode:
    then CUDA enumerates one MIG compute instance and no other GPU, so torch must see at least
    one device (``labtorch.rules.verdict._count_problems`` says why)."""
    gpus = smi.gpus if isinstance(smi, SmiReport) else ()
    return Expectation(
        torch=plan.torch.version,
        variant=plan.variant,
        cuda=plan.cuda,
        gpus=len(gpus),
        mirrors=list(origins.mirror),
        plan_note="; ".join(plan.warnings) or plan.reasons[-1],
        fallbacks=list(origins.fallback),
        count_devices=True,
        mig_gpus=tuple(gpu.index for gpu in gpus if gpu.mig_enabled),
    )
