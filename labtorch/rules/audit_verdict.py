"""Does each env with torch on a host really work on that host's GPUs? (pure)

``labtorch report`` has no plan to compare with: an env is judged against what it claims to be
(its own torch version, CUDA build and origins) and the GPUs nvidia-smi lists. So a CPU build on
a host with working GPUs fails, as does a CUDA build whose kernels do not cover a GPU or whose
matmul fails; on a host without GPUs a working CPU build passes. Where packages came from is
shown, never judged: the audit does not know which mirror the site configured.
"""

from __future__ import annotations

from labtorch.rules.verdict import FAMILY, Expectation, ProbeVerdict, judge

NO_ENV = "no env with torch"
_CPU_BUILD_NOTE = "this env's torch cannot use them"


def env_variant(probe: dict | None) -> str | None:
    """The build an env holds: torch's local label (``cu126``, ``cpu``), else conda's CUDA
    version as ``cu126``, else ``cpu``; None when torch does not import."""
    version = ((probe or {}).get("packages", {}).get("torch") or {}).get("version")
    if version is None:
        return None
    if "+" in version:
        return version.split("+", 1)[1]
    cuda = ((probe or {}).get("gpu") or {}).get("cuda")
    return "cu" + cuda.replace(".", "") if cuda else "cpu"


def _origin_urls(probe: dict) -> list[str]:
    origins = probe.get("origins") or {}
    return [url for name in FAMILY if (url := (origins.get(name) or {}).get("url"))]


def judge_env(probe: dict | None, gpus: int, error: str | None = None) -> ProbeVerdict:
    """The verdict for one env on a host where nvidia-smi lists ``gpus`` working GPUs.

    ``probe`` is what probe_script printed; None with ``error`` (the last line the env's python
    printed) when it printed no result.
    """
    if probe is None:
        return ProbeVerdict(False, [f"the probe printed no result: {error or 'no output'}"], [])
    version = (probe.get("packages", {}).get("torch") or {}).get("version")
    # The env is held to its own claims: its version, its CUDA build, its own origins.
    claims = Expectation(
        torch=version or "",
        variant=env_variant(probe) or "",
        cuda=(probe.get("gpu") or {}).get("cuda"),
        gpus=gpus,
        mirrors=_origin_urls(probe),
        plan_note=_CPU_BUILD_NOTE,
    )
    return judge(probe, claims)


def _by_env(envs: list[dict], key: str) -> list[str]:
    """Every env's failures (or notes), each prefixed with the env's path."""
    return [f"{env['prefix']}: {line}" for env in envs for line in env["probe"][key]]


def judge_host(driver_error: dict | None, envs: list[dict]) -> ProbeVerdict:
    """A host's verdict from its driver error (as the report records it) and its env records
    (each with its ``prefix`` and its ``probe`` verdict): it fails when nvidia-smi fails, when no
    env has torch, or when any env fails."""
    failures = []
    if driver_error:
        failures.append(f"nvidia-smi failed ({driver_error['kind']}): {driver_error['meaning']}")
    if not envs:
        failures.append(NO_ENV)
    failures += _by_env(envs, "failures")
    return ProbeVerdict(not failures, failures, _by_env(envs, "notes"))
