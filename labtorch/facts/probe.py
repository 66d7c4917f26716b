"""The post-install probe, run with the target env's own python."""

from __future__ import annotations

import json
from pathlib import Path

from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.api.exceptions import FactProcessError
from typing_extensions import override

from labtorch import probe_script

_SOURCE = Path(probe_script.__file__).read_text(encoding="utf-8")
_END = "LABTORCH_PROBE_END"


class TorchProbe(FactBase[dict | None]):
    """
    What torch really does in an env: versions, CUDA, devices and a matmul on each, and where
    each torch-family package came from. None when the env has no python. The probe keeps its
    result in the env, for a rerun that finds the env and the driver unchanged.

    + python: the env's python
    """

    @override
    @staticmethod
    def default() -> None:
        return None

    @override
    def command(self, python: str) -> StringCommand:
        # The probe's source goes in a quoted here-document, so nothing in it is expanded.
        return StringCommand(
            "if [ -x", QuoteString(python), "]; then", QuoteString(python),
            f"- {probe_script.KEEP} <<'{_END}'\n"
            f"{_SOURCE}\n{_END}\nfi",
        )  # fmt: skip

    @override
    def process(self, output: list[str]) -> dict | None:
        for line in output:
            if line.startswith(probe_script.MARK):
                try:
                    return json.loads(line[len(probe_script.MARK) :])
                except json.JSONDecodeError as exc:
                    raise FactProcessError(f"unreadable probe output: {exc}") from exc
        return None
