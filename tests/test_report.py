"""The fleet report's HTML page, the audit's judge and the audit report, without a lab.

``sample_report`` and ``sample_audit`` build reports the way the deploy and ``labtorch report``
do, from saved nvidia-smi outputs and probe results; the browser test renders them too.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import replace
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from labtorch.cli.report import AuditError, _in_limit, audit
from labtorch.data.compat import load_compat
from labtorch.data.mirrors import load_catalog
from labtorch.facts.env_discovery import AUDIT_MARK, ENV_MARK, HISTORY_MARK, audit_command
from labtorch.facts.host_state import HostState, parse_host_state
from labtorch.facts.nvidia_smi import parse_nvidia_smi
from labtorch.facts.probe_script import MARK as PROBE_MARK
from labtorch.facts.pyinfra_facts import TorchEnvs
from labtorch.report.html import render_html
from labtorch.report.model import (
    UNREACHABLE,
    audit_record,
    audit_report,
    fleet_report,
    host_record,
)
from labtorch.report.table import render_table
from labtorch.rules.audit_verdict import NO_ENV, env_variant, judge_env
from labtorch.rules.model import HostFacts, Request
from labtorch.rules.plan import plan_for_host
from labtorch.rules.verdict import Expectation, judge

SMI = Path(__file__).parent / "fixtures" / "nvidia-smi"
MIRROR = "http://mirror.example/anaconda/cloud/conda-forge/linux-64"
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
PASCAL = {"index": 0, "name": "NVIDIA GeForce GTX 1080 Ti", "capability": "6.1"}
CU126_ARCHS = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
HOSTILE = "<script>alert('x')</script>"


def snapshot(smi_file: str | None) -> HostState:
    bare = parse_host_state(["@@labtorch system", "Linux", "x86_64", "0", "/root"])
    smi = parse_nvidia_smi((SMI / smi_file).read_text()) if smi_file else None
    return replace(bare, nvidia_smi=smi)


def probe(
    torch: str = "2.7.1",
    cuda: str | None = "12.6",
    archs: list[str] | None = None,
    devices: list[dict] | None = None,
    cpu_matmul: str = "ok",
) -> dict:
    """What probe_script prints for an env (conda origins on the mirror)."""
    return {
        "prefix": "/opt/conda/envs/torch",
        "python": "3.11",
        "packages": {
            "torch": {"version": torch, "error": None},
            "torchvision": {"version": "0.22.1", "error": None},
            "torchaudio": {"version": "2.7.1", "error": None},
        },
        "origins": {
            name: {"installer": "conda", "channel": MIRROR, "url": f"{MIRROR}/{name}.tar.bz2"}
            for name in ("torch", "torchvision", "torchaudio")
        },
        "gpu": {
            "cuda": cuda,
            "available": bool(devices),
            "arch_list": CU126_ARCHS if archs is None and cuda else archs or [],
            "devices": devices or [],
            "warnings": [],
        },
        "cpu_matmul": cpu_matmul,
    }


def pascal(matmul: str = "ok") -> list[dict]:
    return [{**PASCAL, "matmul": matmul}]


def deploy_record(
    name: str, smi_file: str | None, found: dict | None, mirror: str = MIRROR
) -> dict:
    """A host's record as the deploy writes it: plan from the rules, verdict from the probe;
    ``mirror`` is the first mirror (``MIRROR`` then being the fallback)."""
    host = snapshot(smi_file)
    plan = plan_for_host(
        HostFacts(platform="linux-64", glibc="2.36", nvidia_smi=host.nvidia_smi),
        Request(torch="2.7.1"),
        load_compat(),
        load_catalog(),
    )
    if plan.refused:
        return host_record(name, ["gpu"], host, None, plan.reasons[-1], None, None)
    expected = Expectation(
        torch=plan.torch.version,
        variant=plan.variant,
        cuda=plan.cuda,
        gpus=len(host.hardware()["gpus"]),
        mirrors=[mirror],
        fallbacks=[MIRROR] if mirror != MIRROR else [],
    )
    return host_record(name, ["gpu"], host, plan, None, found, judge(found, expected))


def sample_report() -> dict:
    """A deploy's report: a Pascal host that passes, a CPU host (with a hostile name) that passes,
    a host whose driver is not loaded, and a GPU host left with a CPU build."""
    return fleet_report(
        [
            deploy_record("lab04", "table_gtx1080ti_570.86.15.txt", probe(devices=pascal())),
            deploy_record(HOSTILE, None, probe(cuda=None)),
            deploy_record("lab08", "err_driver-not-loaded.txt", None),
            deploy_record("lab09", "table_gtx1080ti_570.86.15.txt", probe(cuda=None)),
        ],
        now=NOW,
    )


def found(smi_file: str | None, *envs: tuple[str, dict | None]) -> dict:
    """The TorchEnvs fact of a host: its hardware and (prefix, probe) per env."""
    listed = [{"prefix": p, "kind": "conda", "probe": pr, "error": None} for p, pr in envs]
    return {**snapshot(smi_file).hardware(), "envs": listed}


def sample_audit() -> dict:
    """An audit: a Pascal host with a stale CPU env beside its CUDA one, a CPU host that passes,
    a host whose driver is not loaded and that has no env, and a host that cannot be reached."""
    stale = found(
        "table_gtx1080ti_570.86.15.txt",
        ("/opt/conda/envs/torch", probe(devices=pascal())),
        ("/opt/conda/envs/old", probe(cuda=None)),
    )
    cpu = found(None, ("/srv/venv", probe("2.9.1+cpu", None)))
    return audit_report(
        [
            audit_record("lab04", ["gpu"], stale),
            audit_record("lab07", ["cpu"], cpu),
            audit_record("lab08", ["gpu"], found("err_driver-not-loaded.txt")),
            audit_record("lab10", ["gpu"], None),
        ],
        now=NOW,
    )


# ---------------------------------------------------------------- the audit's judge


@pytest.mark.parametrize(
    ("found_probe", "gpus", "variant", "failure"),
    [
        (probe(cuda=None), 1, "cpu", "a CPU build on a host with 1 GPU(s)"),
        (probe(devices=pascal()), 1, "cu126", None),
        (probe(archs=["sm_75", "sm_80"], devices=pascal()), 1, "cu126", "do not cover it"),
        (probe(devices=pascal("RuntimeError: no kernel image")), 1, "cu126", "matmul failed"),
        (probe("2.9.1+cpu", None), 0, "cpu", None),
        (probe("2.9.1+cu126", "12.6", devices=pascal()), 1, "cu126", None),
        (probe("2.9.1+cpu", None, cpu_matmul="RuntimeError: boom"), 0, "cpu", "boom"),
        (probe(None, None), 0, None, "torch does not import"),
    ],
    ids=[
        "cpu-build-on-gpu-host",
        "cu126-on-pascal",
        "kernels-do-not-cover",
        "matmul-error",
        "cpu-host-cpu-build",
        "pip-label",
        "cpu-matmul-error",
        "no-torch",
    ],
)
def test_judge_env(found_probe, gpus, variant, failure):
    verdict = judge_env(found_probe, gpus)
    assert env_variant(found_probe) == variant
    assert verdict.passed == (failure is None)
    if failure:
        assert any(failure in line for line in verdict.failures), verdict.failures


def test_an_env_whose_probe_printed_nothing_fails_with_its_last_line():
    verdict = judge_env(None, 1, "Illegal instruction (core dumped)")
    assert not verdict.passed
    assert "Illegal instruction" in verdict.failures[0]


# ---------------------------------------------------------------- the audit report


def test_audit_report_flags_each_failing_host_and_says_why():
    report = sample_audit()
    hosts = {host["name"]: host for host in report["hosts"]}
    assert report["kind"] == "audit"
    assert report["summary"] == {"hosts": 4, "ok": 1, "failed": 3}
    assert hosts["lab07"]["status"] == "ok"
    assert [env["variant"] for env in hosts["lab04"]["envs"]] == ["cu126", "cpu"]
    assert hosts["lab04"]["reason"].startswith("/opt/conda/envs/old: a CPU build on a host with 1")
    assert "/opt/conda/envs/torch" not in hosts["lab04"]["reason"]
    assert "driver-not-loaded" in hosts["lab08"]["reason"]
    assert NO_ENV in hosts["lab08"]["reason"]
    assert hosts["lab10"]["reason"] == UNREACHABLE
    assert hosts["lab10"]["envs"] == []


def test_table_notes_a_host_that_a_fallback_mirror_served():
    record = deploy_record(
        "lab05",
        "table_gtx1080ti_570.86.15.txt",
        probe(devices=pascal()),
        mirror="https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge",
    )
    lines = render_table(fleet_report([record], now=NOW)).splitlines()
    assert record["status"] == "ok"
    assert lines[-3:] == [
        f"  lab05: note: {name} came from the fallback mirror mirror.example: the first mirror "
        "failed this install; check it with `labtorch mirrors`"
        for name in ("torch", "torchvision", "torchaudio")
    ]


def test_audit_table_shows_every_env_and_the_reasons():
    table = render_table(sample_audit())
    assert "2.7.1 (cu126), 2.7.1 (cpu)" in table
    assert "2.9.1+cpu (cpu)" in table
    assert "1 of 4 hosts ok, 3 failed" in table
    assert f"  lab10: {UNREACHABLE}" in table


def test_audit_fact_parses_each_env_and_the_host():
    smi = (SMI / "table_gtx1080ti_570.86.15.txt").read_text().splitlines()
    lines = [
        *["@@labtorch system", "Linux", "x86_64", "0", "/root", "@@labtorch nvidia-smi", *smi],
        "@@labtorch nvidia-smi-status 0",
        AUDIT_MARK,
        f"{ENV_MARK} conda /opt/conda/envs/my env",
        f"{HISTORY_MARK} 3",
        "UserWarning: something on stderr",
        PROBE_MARK + '{"packages": {"torch": {"version": "2.7.1"}}}',
        f"{ENV_MARK} venv /srv/broken",
        "Illegal instruction (core dumped)",
    ]
    result = TorchEnvs().process(lines)
    assert result["driver"]["version"] == "570.86.15"
    assert [gpu["capability"] for gpu in result["gpus"]] == ["6.1"]
    assert result["envs"] == [
        {
            "prefix": "/opt/conda/envs/my env",
            "kind": "conda",
            "probe": {"packages": {"torch": {"version": "2.7.1"}}},
            "error": None,
            "history": 3,
        },
        {
            "prefix": "/srv/broken",
            "kind": "venv",
            "probe": None,
            "error": "Illegal instruction (core dumped)",
            "history": 0,
        },
    ]


def test_audit_command_is_valid_sh():
    done = subprocess.run(["sh", "-n"], input=audit_command(), text=True, capture_output=True)
    assert done.returncode == 0, done.stderr


def test_limit_is_a_group_else_a_name_glob():
    hosts = [{"name": "lab01", "groups": ["gpu"]}, {"name": "cpu01", "groups": ["cpu"]}]
    assert _in_limit(hosts, "gpu") == hosts[:1]
    assert _in_limit(hosts, "cpu*") == hosts[1:]
    assert _in_limit(hosts, None) == hosts


def test_missing_inventory_is_bad_input(tmp_path):
    with pytest.raises(AuditError, match="no inventory file"):
        audit(str(tmp_path / "nowhere.py"))


def test_inventory_pyinfra_cannot_load_is_bad_input(tmp_path):
    inventory = tmp_path / "broken.py"
    inventory.write_text("raise RuntimeError('the lab is down')\n")
    with pytest.raises(AuditError, match="the lab is down"):
        audit(str(inventory))


# ---------------------------------------------------------------- the HTML page


class _Page(HTMLParser):
    """Every tag, attribute and style text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(name, value or "") for name, value in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


def parsed(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


@pytest.mark.parametrize("build", [sample_report, sample_audit])
def test_page_loads_nothing_from_anywhere(build):
    page = parsed(render_html(build()))
    assert not {"script", "img", "link", "iframe", "object", "embed"} & set(page.tags)
    for name, value in page.attrs:
        assert name not in ("src", "srcset", "action", "background"), (name, value)
        if name == "href":
            assert value.startswith("#"), value
        assert "url(" not in value.lower(), (name, value)
    for style in (*page.styles, *(value for name, value in page.attrs if name == "style")):
        assert "url(" not in style.lower() and "@import" not in style.lower()


def test_every_value_is_escaped():
    html = render_html(sample_report())
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "script" not in parsed(html).tags


def test_page_title_summary_and_hosts():
    report = sample_report()
    html = render_html(report)
    assert "<title>labtorch fleet report: 2 of 4 hosts ok</title>" in html
    assert "<strong>4 hosts</strong>" in html and "2 ok" in html and "2 failed" in html
    assert "2026-01-02T03:04:05+00:00" in html
    # Each host has its row, anchored by its name (the hostile one escaped, not skipped).
    ids = [f'id="host-{escape(host["name"])}"' for host in report["hosts"]]
    assert all(html.count(anchor) == 1 for anchor in ids), ids
    assert html.count('id="host-') == len(ids)
    lab08 = next(host for host in report["hosts"] if host["name"] == "lab08")
    assert "driver-not-loaded" in lab08["reason"]
    assert "driver-not-loaded" in html and "modprobe nvidia" in html
    assert "torch is a CPU build, the plan says cu126" in html


def test_failed_hosts_details_are_open_and_provenance_is_text():
    html = render_html(sample_report())
    assert html.count("<details open>") == 2
    assert html.count("<details>") == 2
    assert f"<code>{MIRROR}/torch.tar.bz2</code>" in html
    assert "pytorch=2.7.1=cuda126" in html


def test_audit_page_lists_every_env():
    html = render_html(sample_audit())
    assert "<title>labtorch fleet audit: 1 of 4 hosts ok</title>" in html
    for prefix in ("/opt/conda/envs/torch", "/opt/conda/envs/old", "/srv/venv"):
        assert f"<code>{prefix}</code>" in html
    assert UNREACHABLE in html and NO_ENV in html
