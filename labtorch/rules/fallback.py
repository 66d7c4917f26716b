"""Fallback mirrors: a plan's exact pins, fetched from another mirror when the first one fails.

TUNA answers 403 to address ranges it flags for bulk downloads, and has removed whole mirrors
without notice (reference/mirrors.md §2.7). A fallback mirror is tried only when its plan pins
exactly what the first plan pins, so an env is the same whichever mirror served it. (pure)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from labtorch.rules.model import Plan


@dataclass(frozen=True)
class PipSource:
    """Where one pip install attempt looks: a PyPI index and the variant's wheel page.

    + index_url: the mirror's PyPI simple index
    + wheel_index: ``[layout, url]`` of the variant's wheel page (``flat`` or ``index``), or None
    """

    index_url: str
    wheel_index: list[str] | None = None

    @classmethod
    def of(cls, plan: Plan) -> PipSource:
        return cls(plan.index_url or "", list(plan.wheel_index) if plan.wheel_index else None)


def _pins(plan: Plan) -> list[tuple[str, str, str | None]]:
    return [(pin.name, pin.version, pin.build) for pin in (*plan.packages, *plan.toolkit)]


def usable_fallbacks(
    plan: Plan, candidates: Mapping[str, Plan | str]
) -> tuple[list[Plan], list[str]]:
    """The candidates' plans (by fallback mirror, or why that mirror has none) that pin exactly
    what ``plan`` pins, in order; and why each other mirror was left out."""
    usable, skipped = [], []
    for name, candidate in candidates.items():
        if isinstance(candidate, str):
            skipped.append(f"fallback mirror {name} left out: {candidate}")
        elif mirror_urls([candidate]) == mirror_urls([plan]):
            skipped.append(f"fallback mirror {name} left out: it is the mirror the plan uses")
        elif _pins(candidate) != _pins(plan):
            theirs = ", ".join(pin.spec for pin in (*candidate.packages, *candidate.toolkit))
            skipped.append(
                f"fallback mirror {name} left out: it would install {theirs}, not the plan's pins"
            )
        else:
            usable.append(candidate)
    return usable, skipped


def mirror_urls(plans: list[Plan]) -> list[str]:
    """Every URL the plans fetch from: where the probe accepts packages to have come from."""
    urls: list[str] = []
    for plan in plans:
        urls += [*plan.channel_urls, *(pin.url for pin in (*plan.packages, *plan.toolkit))]
        if plan.index_url:
            urls.append(plan.index_url)
    return urls
