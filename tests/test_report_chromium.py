"""The report's HTML page in a real browser: headless Chromium (Debian's ``chromium`` package),
with every name lookup and proxy connection made to fail, so the page must stand alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_report import HOSTILE, sample_audit, sample_report

from labtorch.report.html import render_html

CHROMIUM = Path("/usr/bin/chromium")
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9"]


@pytest.fixture
def page(tmp_path) -> Path:
    path = tmp_path / "report.html"
    path.write_text(render_html(sample_report()), encoding="utf-8")
    return path


def chromium(tmp_path: Path, page: Path, *action: str) -> str:
    """Run headless Chromium offline on ``page``; its stdout."""
    assert CHROMIUM.exists(), "the browser test needs Debian's chromium package"
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            *OFFLINE,
            *action,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_page_renders_every_host_and_why_one_failed(tmp_path, page):
    dom = chromium(tmp_path, page, "--dump-dom")
    assert "<title>labtorch fleet report: 2 of 4 hosts ok</title>" in dom
    assert "4 hosts" in dom and "2 ok" in dom and "2 failed" in dom
    for name in ("lab04", "lab08", "lab09"):
        assert f'id="host-{name}"' in dom
    assert "&lt;script&gt;alert('x')&lt;/script&gt;" in dom  # shown as text
    assert "<script" not in dom and HOSTILE not in dom  # never run
    assert "nvidia-smi failed (driver-not-loaded)" in dom
    assert "torch is a CPU build, the plan says cu126" in dom


def test_audit_page_renders_every_env(tmp_path):
    page = tmp_path / "audit.html"
    page.write_text(render_html(sample_audit()), encoding="utf-8")
    dom = chromium(tmp_path, page, "--dump-dom")
    assert "<title>labtorch fleet audit: 1 of 4 hosts ok</title>" in dom
    assert "/opt/conda/envs/old: a CPU build on a host with 1 GPU(s)" in dom


def test_page_screenshot(tmp_path, page):
    shot = tmp_path / "report.png"
    chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
