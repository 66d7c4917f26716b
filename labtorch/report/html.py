"""The fleet report as one self-contained HTML page, to open in a browser or attach to a ticket.

No script, no font, no image, no link out: the CSS is inline and a Content-Security-Policy
forbids any fetch, so the page shows the same offline as online. Every value from the report
goes through :func:`html.escape`; URLs are shown as text. Each host's details are in a
``<details>`` (open for failed hosts) that printing expands.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from labtorch.report.model import failure_causes
from labtorch.rules.verdict import FAMILY

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #111; margin: 1.5rem; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 .4rem; }
h3 { font-size: .95rem; margin: .7rem 0 .2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #c8c8c8; padding: .3rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #eee; }
td table { width: auto; }
ul { margin: .2rem 0; padding-left: 1.2rem; }
code { font: .85em ui-monospace, monospace; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 .5rem; border: 1px solid; border-radius: .7rem;
         font-weight: 600; font-size: .85em; white-space: nowrap; }
.badge.ok { color: #0a5c2b; background: #e3f5e9; }
.badge.failed { color: #9b1c1c; background: #fde8e8; }
tbody.failed > tr.host > th { border-left: 4px solid #9b1c1c; }
.reason { color: #9b1c1c; }
.muted { color: #666; }
summary { cursor: pointer; }
@media print {
  body { margin: 0; font-size: 9pt; }
  details::details-content { content-visibility: visible; display: block; }
  summary { list-style: none; font-weight: 600; }
  thead { display: table-header-group; }
  h2, h3 { break-after: avoid; }
  tr.host { break-inside: avoid; break-after: avoid; }
  .badge { background: none; }
}
"""
# The page may use its own inline style and nothing else.
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def _e(value: object) -> str:
    """A value as escaped text; None (unknown or absent) as a dash."""
    return "-" if value is None else html.escape(str(value))


def _badge(status: str) -> str:
    kind = "ok" if status in ("ok", "passed") else "failed"
    return f'<span class="badge {kind}">{_e(status.upper())}</span>'


def _list(items: Iterable[object], empty: str = "none") -> str:
    lines = [f"<li>{_e(item)}</li>" for item in items]
    return f"<ul>{''.join(lines)}</ul>" if lines else f'<span class="muted">{_e(empty)}</span>'


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table from already escaped cells."""
    header = "".join(f"<th>{_e(name)}</th>" for name in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>'


def _gpus(record: dict) -> str:
    error = record["driver"]["error"]
    if error:
        return f'<span class="reason">driver: {_e(error["kind"])}</span>'
    counts: dict[tuple[str, str | None], int] = {}
    for gpu in record["gpus"]:
        key = (gpu["name"], gpu["capability"])
        counts[key] = counts.get(key, 0) + 1
    lines = [f"{count}&times; {_e(name)} (sm {_e(cap)})" for (name, cap), count in counts.items()]
    return "<br>".join(lines) or '<span class="muted">no GPU</span>'


def _driver(record: dict) -> str:
    return f"{_e(record['driver']['version'])} / {_e(record['driver']['cuda'])}"


def _plan(plan: dict | None) -> str:
    if plan is None:
        return '<span class="muted">no plan</span>'
    if plan["refused"]:
        return '<span class="reason">refused</span>'
    torch_pin = f"<br><code>{_e(plan['pins'][0])}</code>" if plan["pins"] else ""
    return f"{_e(plan['variant'])}{torch_pin}"


def _installed(installed: dict | None) -> str:
    if not installed:
        return '<span class="muted">nothing</span>'
    found = [f"{name} {installed[name]}" for name in FAMILY if installed.get(name)]
    found.append(f"CUDA {installed['cuda']}" if installed["cuda"] else "no CUDA")
    return "<br>".join(_e(item) for item in found)


def _result(record: dict) -> str:
    reason = f'<div class="reason">{_e(record["reason"])}</div>' if record["reason"] else ""
    return _badge(record["status"]) + reason


def _env_builds(envs: list[dict]) -> str:
    builds = [
        f"<code>{_e(env['prefix'])}</code>: {_e((env['installed'] or {}).get('torch'))} "
        f"({_e(env['variant'])}) {_badge('passed' if env['probe']['passed'] else 'failed')}"
        for env in envs
    ]
    return "<br>".join(builds) or '<span class="muted">no env with torch</span>'


def _devices(installed: dict | None) -> str:
    rows = [
        [_e(device["index"]), _e(device["name"]), _e(device["capability"]), _e(device["matmul"])]
        for device in (installed or {}).get("devices", [])
    ]
    if not rows:
        return '<span class="muted">no GPU seen by torch</span>'
    return _table(["GPU", "name", "capability", "matmul"], rows)


def _provenance(provenance: dict) -> str:
    rows = [[_e(name), f"<code>{_e(url)}</code>"] for name, url in provenance.items() if url]
    return _table(["package", "came from"], rows) if rows else '<span class="muted">unknown</span>'


def _env_rows(envs: list[dict]) -> str:
    rows = [
        [
            f"<code>{_e(env['prefix'])}</code>",
            _e(env["kind"]),
            _e(env.get("history", 0)),
            _e(env["python"]),
            _e(env["variant"]),
            _installed(env["installed"]),
            _devices(env["installed"]),
            _provenance(env["provenance"]),
            _badge("passed" if env["probe"]["passed"] else "failed")
            + _list(env["probe"]["failures"], empty="")
            + _list(env["probe"]["notes"], empty=""),
        ]
        for env in envs
    ]
    head = ["env", "kind", "states kept", "python", "variant", "installed", "devices"]
    head += ["provenance", "probe"]
    return _table(head, rows, "envs")


def _section(title: str, body: str) -> str:
    return f"<h3>{_e(title)}</h3>{body}"


def _details(record: dict) -> str:
    probe = record["probe"] or {"failures": [], "notes": []}
    checks = [
        _section("Probe failures", _list(probe["failures"])),
        _section("Probe notes", _list(probe["notes"])),
    ]
    if record.get("notes"):
        checks.append(_section("Deploy notes", _list(record["notes"])))
    if "envs" in record:
        parts = [*checks, _section("Envs with torch", _env_rows(record["envs"]))]
    else:
        plan = record["plan"] or {"reasons": [], "warnings": []}
        parts = [
            _section("Why this plan", _list(plan["reasons"])),
            _section("Plan warnings", _list(plan["warnings"])),
            *checks,
            _section("Devices (matmul on each)", _devices(record["installed"])),
            _section("Provenance", _provenance(record["provenance"])),
        ]
    opened = " open" if record["status"] != "ok" else ""
    summary = f"<summary>{_e(record['name'])}: details</summary>"
    return f"<details{opened}>{summary}{''.join(parts)}</details>"


def _host(record: dict, audit: bool) -> str:
    status = "ok" if record["status"] == "ok" else "failed"
    if audit:
        build = [_env_builds(record["envs"])]
    else:
        build = [_plan(record["plan"]), _installed(record["installed"])]
    cells = [
        _e(", ".join(record["groups"])),
        _result(record),
        _gpus(record),
        _driver(record),
        *build,
    ]
    row = f'<th scope="row">{_e(record["name"])}</th>' + "".join(f"<td>{c}</td>" for c in cells)
    more = f'<td colspan="{len(cells) + 1}">{_details(record)}</td>'
    return (
        f'<tbody class="{status}" id="host-{_e(record["name"])}">'
        f'<tr class="host">{row}</tr><tr class="more">{more}</tr></tbody>'
    )


def _summary(report: dict) -> str:
    summary = report["summary"]
    return (
        f'<p class="summary"><strong>{_e(summary["hosts"])} hosts</strong>: '
        f'<span class="badge ok">{_e(summary["ok"])} ok</span> '
        f'<span class="badge failed">{_e(summary["failed"])} failed</span> '
        f"&middot; generated <time>{_e(report['generated'])}</time> by {_e(report['tool'])}</p>"
    )


def _failed(report: dict) -> str:
    failed = [host for host in report["hosts"] if host["status"] != "ok"]
    if not failed:
        return ""
    causes = "".join(
        f"<li><strong>{_e(len(c['hosts']))} host(s)</strong>: {_e(c['cause'])}: "
        + ", ".join(f'<a href="#host-{_e(name)}">{_e(name)}</a>' for name in c["hosts"])
        + "</li>"
        for c in failure_causes(report)
    )
    items = "".join(
        f'<li><a href="#host-{_e(host["name"])}">{_e(host["name"])}</a>: {_e(host["reason"])}</li>'
        for host in failed
    )
    return (
        f'<h2>Failures by cause</h2><ul class="causes">{causes}</ul>'
        f'<h2>Failed hosts</h2><ul class="failed">{items}</ul>'
    )


def render_html(report: dict) -> str:
    """The report (deploy or audit, see ``labtorch.report.model``) as one HTML5 page."""
    audit = report.get("kind") == "audit"
    summary = report["summary"]
    title = (
        f"labtorch fleet {'audit' if audit else 'report'}: "
        f"{summary['ok']} of {summary['hosts']} hosts ok"
    )
    head = ["host", "groups", "status", "GPUs", "driver / newest CUDA"]
    head += ["envs with torch"] if audit else ["plan", "installed"]
    columns = "".join(f'<th scope="col">{_e(name)}</th>' for name in head)
    hosts = "".join(_host(record, audit) for record in report["hosts"])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><h1>{_e(title)}</h1>{_summary(report)}{_failed(report)}"
        f'<h2>Hosts</h2><table class="hosts"><thead><tr>{columns}</tr></thead>{hosts}</table>'
        "</body></html>\n"
    )
