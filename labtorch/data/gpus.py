"""GPUs as labtorch sees them: compute capability and what nvidia-smi tells about each device."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_CAPABILITY = re.compile(r"^(?:sm_|compute_)?(\d+)\.?(\d)$")


@total_ordering
@dataclass(frozen=True)
class ComputeCapability:
    """A CUDA compute capability such as 8.6 (``sm_86``)."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> ComputeCapability:
        """Read ``"8.6"``, ``"86"``, ``"sm_86"`` or ``"compute_86"``."""
        match = _CAPABILITY.match(text.strip())
        if not match:
            raise ValueError(f"not a compute capability: {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def __lt__(self, other: ComputeCapability) -> bool:
        return (self.major, self.minor) < (other.major, other.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def sm(self) -> str:
        return f"sm_{self.major}{self.minor}"


@dataclass(frozen=True)
class Gpu:
    """One physical GPU as reported by nvidia-smi.

    ``capability`` is what nvidia-smi reported or, for drivers that do not report it, what the
    GPU catalog gives for ``name``; ``capability_source`` says which (``"reported"``,
    ``"catalog"``) or ``None`` when it is unknown.
    """

    index: int
    name: str
    uuid: str | None = None
    memory_mib: int | None = None
    capability: ComputeCapability | None = None
    capability_source: str | None = None
    mig_enabled: bool | None = None
