"""``conda-meta/history``, appended in conda's format."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labtorch_sim.conda import CONDA_VERSION


@dataclass(frozen=True)
class Revision:
    """One history entry: the command, what it unlinked and linked, and the specs it acted on."""

    command: str
    unlinked: Sequence[str]
    linked: Sequence[str]
    specs_kind: str
    specs: Sequence[str]

    def render(self) -> str:
        lines = [
            f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} <==",
            f"# cmd: {self.command}",
            f"# conda version: {CONDA_VERSION}",
            *(f"-{dist}" for dist in self.unlinked),
            *(f"+{dist}" for dist in self.linked),
            f"# {self.specs_kind} specs: {list(self.specs)!r}",
        ]
        return "\n".join(lines) + "\n"


def append(prefix: Path, revision: Revision) -> None:
    history = prefix / "conda-meta" / "history"
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a") as stream:
        stream.write(revision.render())
