"""Mirror reachability: the URLs a deploy fetches from a mirror, what each answer means, and
``labtorch mirrors`` against the simulated mirror with faults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from labtorch.data.mirrors import load_catalog, tuna_layout_mirror
from labtorch.report.reachability import (
    BLOCKED,
    FAILING,
    MISSING,
    OK,
    REDIRECTED,
    UNREACHABLE,
    Answer,
    Endpoint,
    classify,
    endpoints,
    render,
)
from labtorch_sim.mirror import set_fault

CATALOG = load_catalog()
TUNA_BLOCK = (
    b"<center>Your access has been blocked due to abnormal traffic. Code: 00000069</center>"
)
URL = "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge/noarch/repodata.json"
ENDPOINT = Endpoint("tuna", "conda conda-forge", URL)


@pytest.mark.parametrize(
    ("answer", "state", "detail"),
    [
        (Answer(200, URL, b"{", 0.12), OK, "HTTP 200 in 0.12 s"),
        (Answer(403, URL, TUNA_BLOCK), BLOCKED, "block page, code 00000069: this address is"),
        (Answer(403, URL, b"Forbidden"), BLOCKED, "403: this address is refused"),
        (Answer(404, URL), MISSING, "does not carry this (or dropped it)"),
        (Answer(502, URL), FAILING, "HTTP 502: the mirror is failing"),
        (
            Answer(200, "https://mirrors.cernet.edu.cn/anaconda/x", b"{"),
            REDIRECTED,
            "served by mirrors.cernet.edu.cn, not mirrors.tuna.tsinghua.edu.cn",
        ),
        (Answer(error="ConnectTimeout"), UNREACHABLE, "no answer (ConnectTimeout): check DNS"),
    ],
)
def test_each_answer_means_one_thing_with_what_to_do(answer, state, detail):
    outcome = classify(ENDPOINT, answer)
    assert (outcome.state, outcome.ok) == (state, state == OK)
    assert detail in outcome.detail


@pytest.mark.parametrize(
    ("name", "variant", "what"),
    [
        (
            "tuna",
            "cpu",
            [
                "conda defaults (main)",
                "conda defaults (r)",
                "conda defaults (msys2)",
                "conda conda-forge",
                "conda pytorch",
                "PyPI (torch)",
            ],
        ),
        ("sustech", "cpu", ["conda nvidia"]),
        ("aliyun", "cu126", ["PyPI (torch)", "PyTorch wheels (cu126)"]),
    ],
)
def test_endpoints_are_what_a_deploy_fetches_from_the_mirror(name, variant, what):
    found = endpoints(CATALOG[name], variant)
    assert [endpoint.what for endpoint in found] == what
    assert all(endpoint.mirror == name for endpoint in found)


def test_endpoint_urls():
    found = {e.what: e.url for e in endpoints(CATALOG["aliyun"], "cu126")}
    assert found["PyTorch wheels (cu126)"] == CATALOG["aliyun"].pytorch_wheels.url("cu126")
    assert found["PyPI (torch)"] == CATALOG["aliyun"].pypi.rstrip("/") + "/torch/"
    site = {e.what: e.url for e in endpoints(tuna_layout_mirror("s", "http://m:8/x/"))}
    assert (
        site["conda conda-forge"] == "http://m:8/x/anaconda/cloud/conda-forge/noarch/repodata.json"
    )
    assert site["conda defaults (main)"] == "http://m:8/x/anaconda/pkgs/main/noarch/repodata.json"


def test_render_lists_every_endpoint_then_what_to_do_about_the_problems():
    outcomes = [classify(ENDPOINT, Answer(200, URL)), classify(ENDPOINT, Answer(404, URL))]
    lines = render(outcomes).splitlines()
    assert lines[0].split() == ["mirror", "what", "result", "url"]
    assert lines[1].split()[-2:] == ["ok", URL] and lines[2].split()[-2:] == ["missing", URL]
    assert lines[3].startswith("  tuna conda conda-forge: 404: the mirror does not carry")
    assert lines[4] == "1 of 2 endpoints answer"


def labtorch_mirrors(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "labtorch.cli.main", "mirrors", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_labtorch_mirrors_on_the_simulated_mirror_with_a_block(mirror):
    process, state = mirror
    set_fault(state, "/anaconda/cloud/conda-forge/", "403")
    # The simulated mirror carries the nvidia channel, as SUSTech does; TUNA's answer is a 404.
    set_fault(state, "/anaconda/cloud/nvidia/", "404")
    try:
        done = labtorch_mirrors("--json", process.url, f"{process.url}/fallback")
    finally:
        set_fault(state, "/anaconda/cloud/conda-forge/", None)
        set_fault(state, "/anaconda/cloud/nvidia/", None)
    assert done.returncode == 1, done.stderr
    outcomes = {
        (o["endpoint"]["mirror"], o["endpoint"]["what"]): o
        for o in json.loads(done.stdout)["outcomes"]
    }
    blocked = outcomes[(process.url, "conda conda-forge")]
    assert blocked["state"] == BLOCKED and "code 00000069" in blocked["detail"]
    assert outcomes[(f"{process.url}/fallback", "conda conda-forge")]["state"] == OK
    assert outcomes[(process.url, "PyPI (torch)")]["state"] == OK
    assert outcomes[(process.url, "conda nvidia")]["state"] == MISSING
    assert outcomes[(f"{process.url}/fallback", "conda nvidia")]["state"] == OK


def test_labtorch_mirrors_exit_status(mirror):
    process, state = mirror
    whole = labtorch_mirrors(f"{process.url}/fallback", "--timeout", "5")
    assert whole.returncode == 0, whole.stdout
    assert whole.stdout.splitlines()[-1] == "7 of 7 endpoints answer"
    set_fault(state, "/fallback/anaconda/cloud/nvidia/", "404")  # as TUNA, without nvidia
    try:
        done = labtorch_mirrors(f"{process.url}/fallback", "--timeout", "5")
    finally:
        set_fault(state, "/fallback/anaconda/cloud/nvidia/", None)
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "6 of 7 endpoints answer"
    unknown = labtorch_mirrors("tsinghua")
    assert unknown.returncode == 2
    assert "unknown mirror 'tsinghua'; known: tuna, bfsu" in unknown.stderr


def test_an_address_nobody_answers_is_unreachable():
    done = labtorch_mirrors("http://127.0.0.1:9", "--timeout", "2")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "0 of 7 endpoints answer"
    assert "no answer (ConnectionError)" in done.stdout
