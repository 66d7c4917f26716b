"""What one pyinfra run learnt about each host, collected in one object that the report reads.

The deploy records each host's state, plan or refusal as it prepares; the probe's verdict arrives
at execute time. pyinfra has no end-of-run hook, but it disconnects every host once the run is
over (executed, dry or stopped): the first disconnect writes the fleet report.
"""

from __future__ import annotations

import json
import os
import sys
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


@dataclass
class HostRun:
    """One host's part of the run: what the deploy read, decided and proved."""

    state: HostState | None = None
    plan: Plan | None = None
    refusal: str | None = None
    probe: dict | None = None
    verdict: ProbeVerdict | None = None


@dataclass
class RunState:
    """Every host's :class:`HostRun` of this pyinfra run, and the report written at its end."""

    hosts: dict[str, HostRun] = field(default_factory=dict)
    inventory: object | None = None
    written: bool = False

    def host(self, host: Host) -> HostRun:
        """The record of ``host``; the first one watches the run's end."""
        if self.inventory is None:
            self.inventory = host.inventory
            host.state.add_callback_handler(_WriteReportAtEnd(self))
        return self.hosts.setdefault(host.name, HostRun())

    def records(self) -> list[dict]:
        """The report's host records, in inventory order; a host the deploy never reached is
        unreachable."""
        records = []
        for target in self.inventory or ():
            run = self.hosts.get(target.name)
            records.append(
                host_record(
                    target.name,
                    list(target.groups),
                    run.state if run else None,
                    run.plan if run else None,
                    run.refusal if run else UNREACHABLE,
                    run.probe if run else None,
                    run.verdict if run else None,
                )
            )
        return records

    def write_report(self) -> None:
        """The fleet table on stderr (stdout may be pyinfra's JSON), and the report as JSON and
        as an HTML page in $LABTORCH_REPORT_DIR (default ./.labtorch)."""
        if self.written or not self.hosts:
            return
        self.written = True
        report = fleet_report(self.records())
        directory = Path(os.environ.get(REPORT_DIR_ENV) or ".labtorch")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (directory / "report.html").write_text(render_html(report), encoding="utf-8")
        print("\n--> labtorch fleet report\n" + render_table(report), file=sys.stderr)
        print(f"    written to {directory / 'report.json'} and report.html", file=sys.stderr)


class _WriteReportAtEnd(BaseStateCallback):
    def __init__(self, run: RunState) -> None:
        self.run = run

    def host_disconnect(self, state: State, host: Host) -> None:
        self.run.write_report()


# One pyinfra run per process: the deploy and the report share this collector.
RUN = RunState()
