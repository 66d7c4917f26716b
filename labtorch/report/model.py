"""The fleet report: one record per host, as JSON (schema below) and as a terminal table.

JSON schema (``schema: 1``)::

    {"schema": 1, "generated": "<ISO 8601 UTC>", "tool": "labtorch",
     "summary": {"hosts": N, "ok": N, "failed": N},
     "hosts": [{
        "name": "lab04", "groups": ["gpu"], "status": "ok" | "failed", "reason": str | null,
        "step": str | null (the deploy's step that failed), "checked": "<ISO 8601 UTC>",
        "in_this_run": bool (false: a record kept from an earlier run outside --limit),
        "platform": "linux-64",
        "driver": {"version": str | null, "cuda": str | null, "kernel_module": str | null,
                   "error": {"kind": str, "meaning": str} | null},
        "gpus": [{"index": 0, "name": str, "capability": "6.1" | null, "memory_mib": int | null,
                  "mig": bool | null}],
        "plan": {"refused": bool, "torch": "2.7.1" | null, "variant": "cu126" | null,
                 "cuda": "12.6" | null, "installer": "conda" | "pip", "pins": [spec, ...],
                 "sources": [url, ...], "reasons": [str, ...], "warnings": [str, ...]} | null,
        "installed": {"torch": str | null, "torchvision": str | null, "torchaudio": str | null,
                      "cuda": str | null, "cuda_available": bool | null,
                      "devices": [{"index", "name", "capability", "matmul"}]} | null,
        "provenance": {"torch": url | null, ...},
        "probe": {"passed": bool, "failures": [str, ...], "notes": [str, ...]} | null,
        "notes": [str, ...] (what else the deploy noticed: packages of the env, dependencies
                  included, that came from outside the mirror and were installed again; the lab
                  cache bypassed, and why; on the cache host, what it fetched and which files a
                  fallback mirror served)
     }]}

An audit (``labtorch report``) has the same shape, plus ``"kind": "audit"`` at the top (a deploy's
report has no ``kind``). Its hosts have no plan (``plan``, ``installed`` null, ``provenance``
all null); ``probe`` gathers the host's failures (each env's prefixed by the env's path), and
each host lists the envs found with torch::

        "envs": [{"prefix": "/opt/conda/envs/torch", "kind": "conda" | "venv",
                  "python": "3.11" | null, "variant": "cu126" | "cpu" | null,
                  "installed": {...as above} | null, "provenance": {"torch": url | null, ...},
                  "probe": {"passed": bool, "failures": [str, ...], "notes": [str, ...]}}]
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import asdict

from labtorch.facts.host_state import HostState
from labtorch.rules.audit_verdict import env_variant, judge_env, judge_host
from labtorch.rules.model import Plan
from labtorch.rules.verdict import FAMILY, ProbeVerdict

SCHEMA = 1
UNREACHABLE = "the host could not be reached"
_GPU_COUNT = re.compile(r"a host with \d+ GPU\(s\)")


def _unknown_hardware() -> dict:
    """The hardware record of a host whose state was never read."""
    driver = {"version": None, "cuda": None, "kernel_module": None, "error": None}
    return {"platform": None, "driver": driver, "gpus": []}


def _plan(plan: Plan | None) -> dict | None:
    if plan is None:
        return None
    pins = (*plan.packages, *plan.toolkit)
    return {
        "refused": plan.refused,
        "torch": plan.torch.version if plan.torch else None,
        "variant": plan.variant,
        "cuda": plan.cuda,
        "installer": plan.installer,
        "pins": [pin.spec for pin in pins],
        "sources": sorted({pin.url for pin in pins}),
        "reasons": list(plan.reasons),
        "warnings": list(plan.warnings),
    }


def _installed(probe: dict | None) -> dict | None:
    if not probe:
        return None
    gpu = probe.get("gpu") or {}
    packages = probe.get("packages", {})
    return {
        **{name: packages.get(name, {}).get("version") for name in FAMILY},
        "cuda": gpu.get("cuda"),
        "cuda_available": gpu.get("available"),
        "devices": gpu.get("devices", []),
    }


def _provenance(probe: dict | None) -> dict:
    origins = (probe or {}).get("origins") or {}
    return {name: (origins.get(name) or {}).get("url") for name in FAMILY}


def host_record(
    name: str,
    groups: list[str],
    host_state: HostState | None,
    plan: Plan | None,
    refusal: str | None,
    probe: dict | None,
    verdict: ProbeVerdict | None,
    step: str | None = None,
    checked: str | None = None,
    notes: Sequence[str] = (),
) -> dict:
    """One host's entry of the report.

    + refusal: why it got no plan, no install, or no probe (the first line of the real error)
    + step: the deploy's step that failed (``Install torch into the conda env``), if one did
    + checked: when this host was last deployed (ISO 8601); its record is kept as it was by a
      later run that did not target it
    + notes: what else the deploy noticed on the host (packages from outside the mirror, the
      lab cache)
    """
    if refusal:
        status, reason = "failed", refusal
    elif verdict is None:
        status, reason = "failed", "the deploy did not reach the probe"
    elif not verdict.passed:
        status, reason = "failed", "; ".join(verdict.failures)
    else:
        status, reason = "ok", None
    return {
        "name": name,
        "groups": sorted(groups),
        "status": status,
        "reason": reason,
        "step": step if status == "failed" else None,
        "checked": checked,
        **(host_state.hardware() if host_state else _unknown_hardware()),
        "plan": _plan(plan),
        "installed": _installed(probe),
        "provenance": _provenance(probe),
        "probe": asdict(verdict) if verdict else None,
        "notes": list(notes),
    }


def env_record(env: dict, gpus: int) -> dict:
    """One env of an audit: ``env`` is one entry of the TorchEnvs fact."""
    probe = env.get("probe")
    return {
        "prefix": env["prefix"],
        "kind": env["kind"],
        "python": (probe or {}).get("python"),
        "variant": env_variant(probe),
        "installed": _installed(probe),
        "provenance": _provenance(probe),
        "probe": asdict(judge_env(probe, gpus, env.get("error"))),
        # How many past states the env keeps for `labtorch rollback`.
        "history": env.get("history", 0),
    }


def audit_record(
    name: str, groups: list[str], found: dict | None, missing: str = UNREACHABLE
) -> dict:
    """One host's entry of an audit: ``found`` is its TorchEnvs fact, None when there is none,
    and then ``missing`` says why."""
    hardware = found or _unknown_hardware()
    envs = [env_record(env, len(hardware["gpus"])) for env in (found or {}).get("envs", [])]
    if found is None:
        verdict = ProbeVerdict(False, [missing], [])
    else:
        verdict = judge_host(hardware["driver"]["error"], envs)
    return {
        "name": name,
        "groups": sorted(groups),
        "status": "ok" if verdict.passed else "failed",
        "reason": "; ".join(verdict.failures) or None,
        "platform": hardware["platform"],
        "driver": hardware["driver"],
        "gpus": hardware["gpus"],
        "plan": None,
        "installed": None,
        "provenance": _provenance(None),
        "probe": asdict(verdict),
        "envs": envs,
    }


def failure_causes(report: dict) -> list[dict]:
    """The failed hosts grouped by cause, most hosts first: ``[{"cause", "hosts"}]``. A cause is
    the reason with what varies from host to host (a GPU count) left out, so one driver upgrade
    needed on forty hosts reads as one line."""
    grouped: dict[str, list[str]] = {}
    for record in report["hosts"]:
        if record["status"] != "ok" and record["reason"]:
            cause = _GPU_COUNT.sub("a host with GPUs", record["reason"])
            grouped.setdefault(cause, []).append(record["name"])
    ranked = sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0]))
    return [{"cause": cause, "hosts": hosts} for cause, hosts in ranked]


def fleet_report(records: list[dict], now: dt.datetime | None = None) -> dict:
    hosts = sorted(records, key=lambda record: record["name"])
    ok = sum(1 for record in hosts if record["status"] == "ok")
    generated = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    return {
        "schema": SCHEMA,
        "generated": generated,
        "tool": "labtorch",
        "summary": {"hosts": len(hosts), "ok": ok, "failed": len(hosts) - ok},
        "hosts": hosts,
    }


def audit_report(records: list[dict], now: dt.datetime | None = None) -> dict:
    """The fleet report of an audit: hosts from :func:`audit_record`."""
    return {**fleet_report(records, now), "kind": "audit"}
