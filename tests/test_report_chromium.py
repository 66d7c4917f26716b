"""The report's HTML page in a real browser: headless Chromium (Debian's ``chromium`` package),
with every name lookup and proxy connection made to fail, so the page must stand alone."""

from __future__ import annotations

import struct
import subprocess
import zlib
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


def _unfilter(kind: int, line: bytearray, previous: bytearray, bpp: int) -> bytearray:
    """Undo one row's PNG filter (PNG spec §9.2), in place."""
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b, c = previous[i], (previous[i - bpp] if i >= bpp else 0)
        if kind == 1:
            line[i] = (line[i] + a) & 255
        elif kind == 2:
            line[i] = (line[i] + b) & 255
        elif kind == 3:
            line[i] = (line[i] + (a + b) // 2) & 255
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    return line


def png_rows(data: bytes, rows: int) -> tuple[int, int, list[list[bytes]]]:
    """Width, height and the RGB of each pixel of the first ``rows`` rows of an 8-bit,
    non-interlaced RGB or RGBA PNG, as Chromium writes them."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks = 8, {}
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunks.setdefault(kind, []).append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert (depth, interlace, color in (2, 6)) == (8, 0, True)
    bpp = 3 if color == 2 else 4
    stride, raw = width * bpp + 1, zlib.decompress(b"".join(chunks[b"IDAT"]))
    previous, pixels = bytearray(stride - 1), []
    for y in range(rows):
        line = _unfilter(raw[y * stride], bytearray(raw[y * stride + 1 : (y + 1) * stride]),
                         previous, bpp)  # fmt: skip
        pixels.append([bytes(line[x : x + 3]) for x in range(0, stride - 1, bpp)])
        previous = line
    return width, height, pixels


def test_page_screenshot(tmp_path, page):
    """The screenshot is the styled page: the window's size, and in its first lines the summary's
    badges, "2 ok" and "2 failed", in their colours (labtorch/report/html.py's stylesheet)."""
    shot = tmp_path / "report.png"
    chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1280,2000")
    width, height, rows = png_rows(shot.read_bytes(), 120)
    assert (width, height) == (1280, 2000)
    colours = {pixel for row in rows for pixel in row}
    assert bytes.fromhex("ffffff") in colours  # the page
    for badge in ("e3f5e9", "0a5c2b", "fde8e8", "9b1c1c"):  # ok and failed: background, text
        assert bytes.fromhex(badge) in colours, badge
