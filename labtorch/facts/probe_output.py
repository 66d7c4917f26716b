"""The probe's source, as sent to a host, and the one JSON line it prints back (pure)."""

from __future__ import annotations

import json
from pathlib import Path

from labtorch.facts import probe_script

PROBE_SOURCE = Path(probe_script.__file__).read_text(encoding="utf-8")


def probe_result(lines: list[str]) -> dict | None:
    """What the probe printed, or None when it printed no result line (no python, no env).

    ValueError when the result line is not JSON.
    """
    for line in lines:
        if line.startswith(probe_script.MARK):
            try:
                return json.loads(line[len(probe_script.MARK) :])
            except json.JSONDecodeError as exc:
                raise ValueError(f"unreadable probe output: {exc}") from exc
    return None
