"""What one pyinfra run learnt about each host, collected in one object that the report reads.

The deploy records each host's state, plan or refusal as it prepares; the probe's verdict arrives
at execute time. pyinfra has no end-of-run hook, but it disconnects every host once the run is
over (executed, dry or stopped): the first disconnect writes the fleet report. A run that never
executed (``--dry``, or stopped before) writes none: nothing was done to report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra.api import State
from pyinfra.api.host import Host
from pyinfra.api.state import BaseStateCallback

from labtorch.facts.host_state import HostState
from labtorch.report.html import render_html
from labtorch.report.model import UNREACHABLE, fleet_report, host_record
from labtorch.report.table import render_table
from labtorch.rules.model import Plan
from labtorch.rules.verdict import ProbeVerdict

REPORT_DIR_ENV = "LABTORCH_REPORT_DIR"
LOST = "the connection to the host was lost"


@dataclass
class HostRun:
    """One host's part of the run: what the deploy read, decided and proved."""

    state: HostState | None = None
    plan: Plan | None = None
    refusal: str | None = None
    step: str | None = None
    probe: dict | None = None
    verdict: ProbeVerdict | None = None
    # What the deploy noticed on the host beyond its verdict (packages from outside the mirror).
    notes: list[str] = field(default_factory=list)


# conda names its errors as a CamelCase word and a colon (CondaHTTPError:, PackagesNotFoundError:,
# UnavailableInvalidChannel:, EnvironmentLocationNotFound:); pip says ERROR:.
_NAMED_ERROR = re.compile(r"^(?:[A-Z][a-z]+(?:[A-Z][A-Za-z]*)+|ERROR):\s")


def first_error_line(lines: list[str]) -> str | None:
    """The line of a failed command's output that says what went wrong: labtorch's own, else
    the first that names an error as conda and pip name them, else the first that says error or
    failed, else the last line printed. A named error that ends in a colon is followed by its
    first item: conda's "Encountered problems while solving:" says nothing of which until its
    "- nothing provides cuda-cudart >=12.1,<12.2 needed by pytorch-cuda-12.1-..." line."""
    printed = [line.strip() for line in lines if line.strip()]
    for line in printed:
        if line.startswith("labtorch: "):
            return line.removeprefix("labtorch: ")
    for index, line in enumerate(printed):
        if _NAMED_ERROR.match(line):
            following = printed[index + 1 : index + 2]
            if line.endswith(":") and following and following[0].startswith("- "):
                return f"{line} {following[0].removeprefix('- ')}"
            return line
    for line in printed:
        if "error" in line.lower() or "failed" in line.lower():
            return line
    return printed[-1] if printed else None


def failed_step(state: State, host: Host) -> tuple[str, str] | None:
    """The first of the host's operations that failed, and the first line of its error."""
    for op_hash in state.get_op_order():
        op_data = state.ops[host].get(op_hash)
        meta = op_data.operation_meta if op_data else None
        if meta is None or not meta.is_complete() or not meta.did_error():
            continue
        step = sorted(state.op_meta[op_hash].names)[0].split(" | ")[-1]
        try:
            lines = meta.stderr_lines + meta.stdout_lines
        except AssertionError:
            lines = []
        return step, first_error_line(lines) or LOST
    return None


@dataclass
class RunState:
    """Every host's :class:`HostRun` of this pyinfra run, and the report written at its end."""

    hosts: dict[str, HostRun] = field(default_factory=dict)
    state: State | None = None
    written: bool = False
    # What else the report notes on a host (the lab cache: what it fetched, or why a host's
    # install went around it), asked when the report is written.
    note_sources: list[Callable[[State, Host], list[str]]] = field(default_factory=list)

    def host(self, host: Host) -> HostRun:
        """The record of ``host``; the first one watches the run's end."""
        if self.state is None:
            self.state = host.state
            host.state.add_callback_handler(_WriteReportAtEnd(self))
        return self.hosts.setdefault(host.name, HostRun())

    def refuse(self, host: Host, step: str, reason: str) -> None:
        run = self.host(host)
        run.step, run.refusal = step, reason

    def _targeted(self) -> list[Host]:
        """The hosts this run was asked to deploy (``--limit`` included)."""
        limit = self.state.limit_hosts if self.state else None
        return list(limit) if isinstance(limit, list) and limit else list(self.state.inventory)

    def records(self, now: str) -> list[dict]:
        """The report's records of the targeted hosts, in inventory order: a host the deploy
        never reached is unreachable; one whose step failed says which, with the error."""
        records = []
        for target in self._targeted():
            run = self.hosts.get(target.name)
            step, refusal = (run.step, run.refusal) if run else (None, UNREACHABLE)
            if run and not refusal and run.verdict is None and self.state is not None:
                step, refusal = failed_step(self.state, target) or (None, None)
            records.append(
                host_record(
                    target.name,
                    list(target.groups),
                    run.state if run else None,
                    run.plan if run else None,
                    refusal,
                    run.probe if run else None,
                    run.verdict if run else None,
                    step=step,
                    checked=now,
                    notes=[*(run.notes if run else ()), *self._notes(target)],
                )
            )
        return records

    def _notes(self, target: Host) -> list[str]:
        if self.state is None:
            return []
        return [note for source in self.note_sources for note in source(self.state, target)]

    def write_report(self) -> None:
        """The fleet table on stderr (stdout may be pyinfra's JSON), and the report as JSON and
        as an HTML page in $LABTORCH_REPORT_DIR (default ./.labtorch). Hosts outside this run
        keep their record of the last run that targeted them."""
        if self.written or not self.hosts:
            return
        self.written = True
        if self.state is not None and not self.state.is_executing:
            print(
                "\n--> labtorch: nothing was executed (--dry?): no report written", file=sys.stderr
            )
            return
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        directory = Path(os.environ.get(REPORT_DIR_ENV) or ".labtorch")
        records = [{**r, "in_this_run": True} for r in self.records(now)]
        records += _kept_records(directory / "report.json", {r["name"] for r in records})
        report = fleet_report(records)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (directory / "report.html").write_text(render_html(report), encoding="utf-8")
        print("\n--> labtorch fleet report\n" + render_table(report), file=sys.stderr)
        print(f"    written to {directory / 'report.json'} and report.html", file=sys.stderr)


def _kept_records(path: Path, targeted: set[str]) -> list[dict]:
    """The previous report's records of the hosts this run did not target (an unreadable or
    absent report keeps none)."""
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if previous.get("kind") == "audit":
        return []
    return [
        {**record, "in_this_run": False}
        for record in previous.get("hosts", [])
        if isinstance(record, dict) and record.get("name") not in targeted
    ]


class _WriteReportAtEnd(BaseStateCallback):
    def __init__(self, run: RunState) -> None:
        self.run = run

    def host_disconnect(self, state: State, host: Host) -> None:
        self.run.write_report()


# One pyinfra run per process: the deploy and the report share this collector.
RUN = RunState()
