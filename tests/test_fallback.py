"""Fallback mirrors: which mirrors may serve a plan's exact pins when the first one fails."""

from __future__ import annotations

import pytest
from test_rules import A100, CATALOG, GTX1080TI, H100, host, plan

from labtorch.data.compat import load_compat
from labtorch.deploy.inputs import catalog_for, expectation_for, fallback_requests, request_for
from labtorch.deploy.settings import Settings
from labtorch.rules.fallback import PipSource, mirror_urls, usable_fallbacks
from labtorch.rules.model import Plan, RequestError
from labtorch.rules.plan import plan_for_host
from labtorch.rules.provenance import is_under, origins_for
from labtorch.rules.verdict import judge

HOSTS = {
    "H100 on 570, conda-forge 2.7.1": (host("570.86", "12.8", H100), "2.7.1", "conda"),
    "A100 on 535, pytorch channel 2.3.1": (host("535.104", "12.2", A100), "2.3.1", "conda"),
    "GTX 1080 Ti on 580, pip 2.9.1": (
        host("580.65", "13.0", GTX1080TI, python="3.11"),
        "2.9.1",
        "pip",
    ),
    "CPU host, pip 2.9.1": (host(python="3.11"), "2.9.1", "pip"),
}


def candidates(case: str, mirrors: list[str]) -> tuple[Plan, dict[str, Plan | str]]:
    facts, release, installer = HOSTS[case]
    first = plan(facts, torch=release, installer=installer)
    found: dict[str, Plan | str] = {}
    for name in mirrors:
        try:
            found[name] = plan(facts, torch=release, installer=installer, mirror=name)
        except RequestError as exc:
            found[name] = str(exc)
    return first, found


@pytest.mark.parametrize(
    ("case", "usable", "left_out"),
    [
        ("H100 on 570, conda-forge 2.7.1", ["bfsu", "upstream"], ["sustech", "aliyun", "nju"]),
        ("A100 on 535, pytorch channel 2.3.1", ["bfsu", "upstream"], ["sustech", "aliyun", "nju"]),
        ("GTX 1080 Ti on 580, pip 2.9.1", ["bfsu", "aliyun", "nju", "upstream"], ["sustech"]),
        ("CPU host, pip 2.9.1", ["bfsu", "aliyun", "nju", "upstream"], ["sustech"]),
    ],
)
def test_a_fallback_serves_the_same_pins_or_is_left_out_with_its_reason(case, usable, left_out):
    first, found = candidates(case, [name for name in CATALOG.mirrors if name != "tuna"])
    plans, skipped = usable_fallbacks(first, found)
    names = {id(candidate): name for name, candidate in found.items()}
    assert [names[id(fallback)] for fallback in plans] == usable
    assert [line.split()[2] for line in skipped] == left_out
    for fallback in plans:
        assert [pin.spec for pin in fallback.packages] == [pin.spec for pin in first.packages]
        assert not any("tuna" in url for url in mirror_urls([fallback]))


def test_a_mirror_that_lacks_the_channel_is_named_in_the_reason():
    first, found = candidates("A100 on 535, pytorch channel 2.3.1", ["aliyun"])
    _, skipped = usable_fallbacks(first, found)
    assert skipped == [
        "fallback mirror aliyun left out: aliyun does not mirror the conda channel 'pytorch', "
        "which this plan needs; choose a mirror that does"
    ]


def test_the_plans_own_mirror_is_no_fallback():
    first, found = candidates("H100 on 570, conda-forge 2.7.1", ["tuna"])
    assert usable_fallbacks(first, found) == (
        [],
        ["fallback mirror tuna left out: it is the mirror the plan uses"],
    )


def test_a_fallback_that_would_pin_another_build_is_left_out():
    facts, _, _ = HOSTS["H100 on 570, conda-forge 2.7.1"]
    first = plan(facts, torch="2.7.1", installer="conda")
    other = plan(facts, torch="2.7.1", installer="conda", mirror="bfsu", variant="cpu")
    plans, skipped = usable_fallbacks(first, {"bfsu": other})
    assert plans == []
    assert skipped[0].startswith("fallback mirror bfsu left out: it would install pytorch=2.7.1=")
    assert skipped[0].endswith(", not the plan's pins")


def test_pip_source_of_a_plan():
    _, found = candidates("GTX 1080 Ti on 580, pip 2.9.1", ["bfsu"])
    assert PipSource.of(found["bfsu"]) == PipSource(
        "https://mirrors.bfsu.edu.cn/pypi/web/simple",
        ["flat", "https://mirrors.aliyun.com/pytorch-wheels/cu126/"],
    )


def test_mirror_urls_cover_channels_pins_and_index():
    first, found = candidates("GTX 1080 Ti on 580, pip 2.9.1", ["bfsu"])
    urls = mirror_urls([first, found["bfsu"]])
    assert "https://pypi.tuna.tsinghua.edu.cn/simple" in urls
    assert "https://mirrors.bfsu.edu.cn/pypi/web/simple" in urls
    assert any("pytorch-wheels/cu126" in url for url in urls)


def test_fallback_urls_become_tuna_layout_mirrors_named_by_their_url():
    settings = Settings(fallback_mirrors=("bfsu", "http://10.0.0.5/mirror"))
    catalog = catalog_for(settings)
    requests = fallback_requests(settings, request_for(settings), catalog)
    assert [r.mirror for r in requests.values()] == ["bfsu", "http://10.0.0.5/mirror"]
    site = catalog["http://10.0.0.5/mirror"]
    assert site.channel_url("conda-forge") == "http://10.0.0.5/mirror/anaconda/cloud/conda-forge"
    assert site.pypi == "http://10.0.0.5/mirror/pypi/web/simple"
    assert all(r.wheel_mirror == "aliyun" for r in requests.values())


def test_a_fallback_with_wheel_indexes_serves_the_wheels_too():
    settings = Settings(installer="pip", release="2.9.1", fallback_mirrors=("nju", "bfsu"))
    catalog = catalog_for(settings)
    requests = fallback_requests(settings, request_for(settings), catalog)
    assert {name: r.wheel_mirror for name, r in requests.items()} == {
        "nju": "nju",
        "bfsu": "aliyun",
    }
    facts, _, _ = HOSTS["GTX 1080 Ti on 580, pip 2.9.1"]
    first = plan(facts, torch="2.9.1", installer="pip")
    nju = plan_for_host(facts, requests["nju"], load_compat(), catalog)
    plans, skipped = usable_fallbacks(first, {"nju": nju})
    assert (plans, skipped) == ([nju], [])
    assert PipSource.of(nju).wheel_index[1] == catalog["nju"].pytorch_wheels.url("cu126")
    assert PipSource.of(nju).index_url == catalog["nju"].pypi


@pytest.mark.parametrize(
    ("served_by", "passes", "note"),
    [
        ("https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge", True, None),
        (
            "https://mirrors.bfsu.edu.cn/anaconda/cloud/conda-forge",
            True,
            "torch came from the fallback mirror mirrors.bfsu.edu.cn: the first mirror failed "
            "this install; check it with `labtorch mirrors`",
        ),
        ("https://conda.anaconda.org/conda-forge", False, None),
    ],
)
def test_the_probe_accepts_the_plans_mirror_and_its_fallbacks_only(served_by, passes, note):
    facts, _, _ = HOSTS["H100 on 570, conda-forge 2.7.1"]
    first = plan(facts, torch="2.7.1", installer="conda")
    bfsu = plan(facts, torch="2.7.1", installer="conda", mirror="bfsu")
    expected = expectation_for(first, origins_for(first, [bfsu], CATALOG), facts.nvidia_smi)
    assert (expected.torch, expected.variant, expected.gpus) == ("2.7.1", "cu126", 1)
    probe = {
        "packages": {"torch": {"version": "2.7.1", "error": None}},
        "origins": {"torch": {"url": f"{served_by}/linux-64/pytorch-2.7.1.conda"}},
        "gpu": {
            "cuda": "12.6",
            "available": True,
            "arch_list": ["sm_90"],
            "devices": [{"index": 0, "name": "H100", "capability": "9.0", "matmul": "ok"}],
        },
        "cpu_matmul": "ok",
    }
    verdict = judge(probe, expected)
    assert verdict.passed is passes, verdict.failures
    assert verdict.notes == ([note] if note else [])
    if not passes:
        assert verdict.failures == [
            f"torch came from {served_by}/linux-64/pytorch-2.7.1.conda, not from the mirror "
            "(mirrors.bfsu.edu.cn, mirrors.tuna.tsinghua.edu.cn)"
        ]


SITE = "http://127.0.0.1:8701"
SITE_WHEELS = f"{SITE}/pytorch-wheels/{{variant}}/"


def site_settings(**changes) -> Settings:
    return Settings(
        **{
            "installer": "pip",
            "release": "2.9.1",
            "mirror_url": SITE,
            "wheel_mirror_url": SITE_WHEELS,
            "fallback_mirrors": (f"{SITE}/fallback", "bfsu"),
            **changes,
        }
    )


def pip_plans(settings: Settings) -> tuple[Plan, list[Plan]]:
    """A GTX 1080 Ti host's plan (cu126 wheels) and its fallbacks' plans, in order."""
    catalog = catalog_for(settings)
    request = request_for(settings)
    facts, _, _ = HOSTS["GTX 1080 Ti on 580, pip 2.9.1"]
    first = plan_for_host(facts, request, load_compat(), catalog)
    candidates = {
        name: plan_for_host(facts, fallback, load_compat(), catalog)
        for name, fallback in fallback_requests(settings, request, catalog).items()
    }
    fallbacks, skipped = usable_fallbacks(first, candidates)
    assert skipped == []
    return first, fallbacks


def pip_attempts(settings: Settings) -> list[PipSource]:
    """Every pip install attempt a GTX 1080 Ti host (cu126 wheels) makes, in order."""
    first, fallbacks = pip_plans(settings)
    return [PipSource.of(first), *(PipSource.of(fallback) for fallback in fallbacks)]


@pytest.mark.parametrize(
    ("path", "origin"),
    [
        # The fallback URL is tried with the site's wheel page too: that page stays the mirror's.
        ("/pytorch-wheels/cu126/torch-2.9.1%2Bcu126-cp311-cp311-linux_x86_64.whl", "mirror"),
        ("/pypi/web/packages/filelock-3.20.0-py3-none-any.whl", "mirror"),
        ("/fallback/pytorch-wheels/cu126/torch-2.9.1%2Bcu126-cp311-cp311-linux_x86_64.whl",
         "fallback"),
        ("/fallback/pypi/web/packages/filelock-3.20.0-py3-none-any.whl", "fallback"),
        ("/elsewhere/filelock-3.20.0-py3-none-any.whl", None),
    ],
)  # fmt: skip
def test_a_pip_package_from_the_sites_own_pages_is_from_the_mirror(path, origin):
    """The last session's 'lab07 installed from the fallback mirror': the fallback attempt that
    reuses the site's wheel page put that page among the fallback's URLs, and took it out of the
    mirror's, so every wheel from it read as the fallback's."""
    first, fallbacks = pip_plans(site_settings())
    origins = origins_for(first, fallbacks, catalog_for(site_settings()))
    url = SITE + path
    found = [name for name in ("mirror", "fallback") if is_under(url, getattr(origins, name))]
    assert found == ([origin] if origin else [])


def test_a_fallback_url_laid_out_like_the_site_uses_its_own_wheel_page():
    """A 404 on the site's wheel pages must not fail the fallback too (issue 11)."""
    assert [(s.index_url, s.wheel_index[1]) for s in pip_attempts(site_settings())] == [
        (f"{SITE}/pypi/web/simple", f"{SITE}/pytorch-wheels/cu126/"),
        (f"{SITE}/fallback/pypi/web/simple", f"{SITE}/fallback/pytorch-wheels/cu126/"),
        # The fallback's page is inferred: its PyPI once more with the site's wheel page.
        (f"{SITE}/fallback/pypi/web/simple", f"{SITE}/pytorch-wheels/cu126/"),
        # bfsu has no wheel page of its own: the site's.
        ("https://mirrors.bfsu.edu.cn/pypi/web/simple", f"{SITE}/pytorch-wheels/cu126/"),
    ]


def test_a_site_wheel_page_elsewhere_gives_a_fallback_url_no_page_of_its_own():
    settings = site_settings(wheel_mirror_url="http://wheels.example/whl/{variant}/")
    assert [s.wheel_index[1] for s in pip_attempts(settings)] == [
        "http://wheels.example/whl/cu126/"
    ] * 3


def test_the_conda_route_tries_each_fallback_once():
    settings = site_settings(installer="conda", release="2.7.1")
    requests = fallback_requests(settings, request_for(settings), catalog_for(settings))
    assert list(requests) == [f"{SITE}/fallback", "bfsu"]
    assert requests[f"{SITE}/fallback"].wheel_mirror == f"{SITE}/fallback"
