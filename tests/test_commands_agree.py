"""The command ``labtorch plan`` prints and the commands the deploy runs come from one builder:
for every route, the deploy's command, less what only the deploy adds (unattended flags, the
env by path, its own python, pip's report, the CUDA override), is the printed command word for
word, with the channels by name where the printed one shows their URLs."""

from __future__ import annotations

import shlex

import pytest
from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host
from test_fallback import candidates
from test_rules import A100, GTX1080TI, H100, host, plan

from labtorch.operations import conda, pip
from labtorch.rules.commands import install_command
from labtorch.rules.fallback import PipSource, usable_fallbacks
from labtorch.rules.model import Plan

PREFIX = "/opt/conda/envs/torch"
VENV = "/opt/labtorch/venvs/torch"
ROUTES = {
    "conda-forge cuda": (host("570.86", "12.8", H100), "2.7.1", "conda", False),
    "conda-forge cpu": (host(), "2.7.1", "conda", False),
    "pytorch channel cuda": (host("535.104", "12.2", A100), "2.3.1", "conda", False),
    "pytorch channel cpu": (host(), "2.3.1", "conda", False),
    "conda toolkit": (host("570.86", "12.8", H100), "2.7.1", "conda", True),
    "pip wheel page": (host("580.65", "13.0", GTX1080TI, python="3.11"), "2.9.1", "pip", False),
    "pip PyPI default": (host(python="3.11"), "2.9.1", "pip", False),
    "pip toolkit": (host("580.65", "13.0", GTX1080TI, python="3.11"), "2.9.1", "pip", True),
}


def _run(op, **kwargs) -> list[str]:
    state = FakeState()
    with ctx_state.use(state), ctx_host.use(create_host(state, facts={})):
        return [command.get_raw_value() for command in op._inner(**kwargs)]


def _deploy_conda(first: Plan, fallbacks: list[Plan]) -> list[str]:
    """The attempts of the deploy's install (a ``||`` chain), one command each."""
    (chain,) = _run(
        conda.env,
        conda="/opt/conda/bin/conda",
        prefix=PREFIX,
        pins=[*first.packages, *first.toolkit],
        channels=list(first.channels),
        python=first.python,
        cuda=first.cuda,
        installed=None,
        fallback_channels=[list(fallback.channel_urls) for fallback in fallbacks],
    )
    return chain.split(" || ")


def _deploy_pip(first: Plan, fallbacks: list[Plan]) -> list[str]:
    create, chain = _run(
        pip.venv,
        python="python3",
        prefix=VENV,
        pins=[*first.packages, *first.toolkit],
        index_url=first.index_url,
        wheel_index=list(first.wheel_index) if first.wheel_index else None,
        installed=None,
        fallbacks=[PipSource.of(fallback) for fallback in fallbacks],
    )
    assert create == f"python3 -m venv {VENV}"
    return chain.split(" || ")


def _urls(plan: Plan) -> dict[str, list[str]]:
    """Each channel's URLs in the printed command: one each, and ``defaults`` all of the
    mirror's default channels (as the condarc labtorch writes expands it for conda)."""
    urls = list(plan.channel_urls)
    defaults = len(urls) - len(plan.channels) + 1
    by_name = {url: [url] for url in urls}
    for channel in plan.channels:
        take = defaults if channel == "defaults" else 1
        by_name[channel], urls = urls[:take], urls[take:]
    return by_name


def _channels_by_url(words: list[str], plan: Plan) -> list[str]:
    out: list[str] = []
    pending = iter(words)
    for word in pending:
        if word == "-c":
            for url in _urls(plan)[next(pending)]:
                out += ["-c", url]
        else:
            out.append(word)
    return out


def _as_printed(command: str, plan: Plan) -> str:
    """The deploy's command less what only the deploy adds, channels by URL."""
    words = shlex.split(command)
    if words[0] == "env":
        assert words[1] == f"CONDA_OVERRIDE_CUDA={plan.cuda}"
        words = words[2:]
    if words[0].endswith("/conda"):
        words[0] = "conda"
        assert words[2:4] == ["-p", PREFIX]
        words[2:4] = ["-n", "torch"]
        for flag in ("-y", "-q"):
            words.remove(flag)
        words = _channels_by_url(words, plan)
    else:
        assert words[0] == f"{VENV}/bin/python"
        words[0] = f"python{plan.python}"
        report = words.index("--report")
        assert words[report + 1] == f"{VENV}/labtorch-pip-report.json"
        del words[report : report + 2]
        for flag in ("-q", "--disable-pip-version-check"):
            words.remove(flag)
    return shlex.join(words)


def _printed(plan: Plan) -> str:
    return shlex.join(shlex.split(install_command(plan)))


@pytest.mark.parametrize("route", ROUTES)
def test_the_deploy_runs_the_printed_command(route: str) -> None:
    facts, release, installer, toolkit = ROUTES[route]
    first = plan(facts, torch=release, installer=installer, toolkit=toolkit)
    run = _deploy_conda if installer == "conda" else _deploy_pip
    (attempt,) = run(first, [])
    assert _as_printed(attempt, first) == _printed(first)


@pytest.mark.parametrize(
    "case",
    ["H100 on 570, conda-forge 2.7.1", "A100 on 535, pytorch channel 2.3.1",
     "GTX 1080 Ti on 580, pip 2.9.1", "CPU host, pip 2.9.1"],
)  # fmt: skip
def test_each_fallback_attempt_is_the_fallback_plans_printed_command(case: str) -> None:
    first, found = candidates(case, ["bfsu", "nju"])
    fallbacks, _ = usable_fallbacks(first, found)
    assert fallbacks, "the case must exercise at least one fallback"
    run = _deploy_conda if first.installer == "conda" else _deploy_pip
    primary, *others = run(first, fallbacks)
    assert _as_printed(primary, first) == _printed(first)
    assert len(others) == len(fallbacks)
    for attempt, fallback in zip(others, fallbacks, strict=True):
        assert _as_printed(attempt, fallback) == _printed(fallback)
