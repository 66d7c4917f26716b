"""The plan being built: reasons and warnings accumulate as rules fire (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Decision:
    """The plan being built; reasons and warnings accumulate as rules fire."""

    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
