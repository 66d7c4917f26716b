"""The fleet report as a terminal table: one line per host, the reason under a failed one."""

from __future__ import annotations

from labtorch.report.model import failure_causes


def _gpu_summary(record: dict) -> str:
    if record["driver"]["error"]:
        return f"driver: {record['driver']['error']['kind']}"
    gpus = record["gpus"]
    if not gpus:
        return "no GPU"
    names = {gpu["name"] for gpu in gpus}
    first = next(iter(names))
    return f"{len(gpus)}x {first}" if len(names) == 1 else f"{len(gpus)} GPUs"


def _env_build(env: dict) -> str:
    torch = (env["installed"] or {}).get("torch") or "-"
    kept = env.get("history") or 0
    history = f"; {kept} state{'s' if kept != 1 else ''} to roll back to" if kept else ""
    return f"{torch} ({env['variant'] or '-'}{history})"


def _build(record: dict) -> str:
    if "envs" in record:
        return ", ".join(_env_build(env) for env in record["envs"]) or "-"
    installed = record["installed"] or {}
    plan = record["plan"] or {}
    torch = installed.get("torch") or "-"
    variant = plan.get("variant") or "-"
    return f"{torch} ({variant})"


def render_table(report: dict) -> str:
    """A compact table for the terminal, one line per host, then the reasons of failed hosts
    and the probe's notes (a package a fallback mirror served, an origin not recorded)."""
    rows = [("host", "status", "GPUs", "driver / CUDA", "torch (variant)")]
    for record in report["hosts"]:
        driver = record["driver"]
        rows.append(
            (
                record["name"],
                record["status"].upper(),
                _gpu_summary(record),
                f"{driver['version'] or '-'} / {driver['cuda'] or '-'}",
                _build(record),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    summary = report["summary"]
    lines.append(f"{summary['ok']} of {summary['hosts']} hosts ok, {summary['failed']} failed")
    causes = failure_causes(report)
    if causes:
        lines.append("Failures by cause:")
        lines += [
            f"  {len(c['hosts'])} host(s): {c['cause']}: {', '.join(c['hosts'])}" for c in causes
        ]
        lines.append("Per host:")
    for record in report["hosts"]:
        if record["reason"]:
            lines.append(f"  {record['name']}: {record['reason']}")
        for note in (*(record["probe"] or {}).get("notes", ()), *(record.get("notes") or ())):
            lines.append(f"  {record['name']}: note: {note}")
    return "\n".join(lines)
