"""Rolling an env back: which recorded state, whether the env already is it, and what the probe
must then find (pure). The states are those :mod:`labtorch.facts.history_script` records."""

from __future__ import annotations

import re

from labtorch.facts.history_script import fingerprint, normalize
from labtorch.rules.audit_verdict import judge_env
from labtorch.rules.verdict import ProbeVerdict

PREVIOUS = "previous"
# How `labtorch rollback` hands the rollback deploy its target and where to write the results.
TO_ENV = "LABTORCH_ROLLBACK_TO"
RESULT_ENV = "LABTORCH_ROLLBACK_RESULT"
_DIST_INFO = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)\.dist-info$")


def parse_target(value: str | int) -> str | int:
    """``previous`` or a state's number, from the command line; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip()
    if text == PREVIOUS:
        return PREVIOUS
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError(f"--to takes 'previous' or a state's number (1, 2, ...), not {value!r}")


def choose(states: list[dict], target: str | int, prefix: str) -> dict | str:
    """The state to put back (``previous``: the newest one recorded), or why there is none."""
    if not states:
        return (
            f"no recorded state of {prefix}: a deploy records the env's state before each change "
            "(torch_env_history), and this env has not been changed since"
        )
    if target == PREVIOUS:
        return states[-1]
    found = next((state for state in states if state["id"] == target), None)
    if found is None:
        kept = ", ".join(str(state["id"]) for state in states)
        return f"no state {target} of {prefix} is kept (kept: {kept})"
    return found


def listing_fingerprint(kind: str, listing: tuple[str, ...]) -> list[str]:
    """The env's fingerprint (as the history program computes it) from the host state's
    listing: conda-meta's ``name-version-build.json`` files, or pip's ``.dist-info`` folders."""
    if kind == "conda":
        return sorted(name.removesuffix(".json") for name in listing if name.endswith(".json"))
    found = []
    for name in listing:
        match = _DIST_INFO.match(name)
        if match:
            found.append(normalize(match.group("name")) + "==" + match.group("version"))
    return sorted(found)


def holds(state: dict, listing: tuple[str, ...]) -> bool:
    """Whether the env (its listing, from the host state) already is the recorded ``state``."""
    kind = state.get("kind", "conda")
    return listing_fingerprint(kind, listing) == fingerprint(kind, state.get("packages") or [])


def describe(state: dict) -> str:
    """One line for a state: its number, torch, when and by which run."""
    torch = state.get("torch") or "no torch"
    revision = state.get("conda_revision")
    conda = f", conda revision {revision}" if revision is not None else ""
    return (
        f"state {state['id']} (torch {torch}{conda}; recorded {state.get('time', '?')} "
        f"by run {state.get('run', '?')}: {state.get('reason', '')})"
    )


def rollback_verdict(probe: dict | None, torch: str | None, gpus: int) -> ProbeVerdict:
    """The probe of an env put back to a recorded state: the env judged against its own claims
    (:func:`labtorch.rules.audit_verdict.judge_env`: its GPUs, kernels, a matmul), and torch the
    version the state recorded (conda's ``2.3.1``; pip's full label, ``2.9.1+cu126``)."""
    verdict = judge_env(probe, gpus)
    found = ((probe or {}).get("packages", {}).get("torch") or {}).get("version")
    if torch and probe is not None and not _same_torch(found, torch):
        failures = [f"torch is {found or 'missing'}, not the recorded {torch}", *verdict.failures]
        return ProbeVerdict(False, failures, verdict.notes)
    return verdict


def _same_torch(found: str | None, recorded: str) -> bool:
    if found is None:
        return False
    if "+" in recorded:
        return found == recorded
    return found.split("+", 1)[0] == recorded
