"""Can this machine reach a mirror? What to fetch, and what each answer means. (pure)

TUNA answers 403 with a block page to address ranges it flags for bulk downloads, and has
removed whole mirrors without notice (redirecting to another host meanwhile); a mirror may also
lack a channel labtorch needs. ``endpoints`` names the URLs a deploy would fetch from a mirror
and ``classify`` turns one answer into an outcome with what to do; the fetching is elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from labtorch.data.mirrors import DEFAULTS, Mirror

# The conda channels plans use, besides the mirror's defaults.
PLAN_CHANNELS = ("conda-forge", "pytorch", "nvidia")

OK = "ok"
BLOCKED = "blocked"
MISSING = "missing"
REDIRECTED = "redirected"
FAILING = "failing"
UNREACHABLE = "unreachable"

_BLOCK_CODE = re.compile(rb"Code:\s*([0-9A-Fa-f]{8})")


@dataclass(frozen=True)
class Endpoint:
    """One URL a deploy would fetch from ``mirror``; ``what`` says what it stands for."""

    mirror: str
    what: str
    url: str


@dataclass(frozen=True)
class Answer:
    """What fetching an endpoint gave: the status and final URL after redirects, the first bytes
    of the body; or the error that kept it from answering."""

    status: int | None = None
    final_url: str | None = None
    body_head: bytes = b""
    seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class Outcome:
    endpoint: Endpoint
    state: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.state == OK


def endpoints(mirror: Mirror, variant: str = "cpu") -> list[Endpoint]:
    """The URLs a deploy fetches from ``mirror``: each conda channel's ``noarch/repodata.json``,
    the PyPI page of torch, and the variant's PyTorch wheel page, where the mirror has them."""
    channels = [(f"{DEFAULTS} ({url.rsplit('/', 1)[-1]})", url) for url in mirror.default_channels]
    channels += [(c, mirror.channel_url(c)) for c in PLAN_CHANNELS if mirror.carries(c)]
    found = [
        Endpoint(mirror.name, f"conda {what}", f"{url}/noarch/repodata.json")
        for what, url in channels
    ]
    if mirror.pypi:
        found.append(Endpoint(mirror.name, "PyPI (torch)", f"{mirror.pypi.rstrip('/')}/torch/"))
    if mirror.pytorch_wheels:
        found.append(
            Endpoint(mirror.name, f"PyTorch wheels ({variant})", mirror.pytorch_wheels.url(variant))
        )
    return found


def classify(endpoint: Endpoint, answer: Answer) -> Outcome:
    """What an answer means for a deploy, and what to do about it."""
    if answer.error is not None:
        return Outcome(
            endpoint,
            UNREACHABLE,
            f"no answer ({answer.error}): check DNS, proxy and firewall, or use another mirror",
        )
    status = answer.status
    if status == 403:
        code = _BLOCK_CODE.search(answer.body_head)
        page = f"the mirror's block page, code {code.group(1).decode()}" if code else "403"
        return Outcome(
            endpoint,
            BLOCKED,
            f"{page}: this address is refused (TUNA blocks ranges it flags for bulk downloads); "
            "put another mirror in torch_fallback_mirrors, use a site cache, or ask the "
            "mirror's admins",
        )
    if status == 404:
        return Outcome(
            endpoint,
            MISSING,
            "404: the mirror does not carry this (or dropped it); choose a mirror that does",
        )
    if status is None or status >= 400:
        return Outcome(endpoint, FAILING, f"HTTP {status}: the mirror is failing; retry later")
    requested = urlsplit(endpoint.url).netloc
    served = urlsplit(answer.final_url or endpoint.url).netloc
    if served != requested:
        return Outcome(
            endpoint,
            REDIRECTED,
            f"served by {served}, not {requested}: the mirror hands this to another host (as "
            "TUNA did while its Anaconda mirror was removed); name that host's mirror instead",
        )
    return Outcome(endpoint, OK, f"HTTP {status} in {answer.seconds:.2f} s")


def render(outcomes: list[Outcome]) -> str:
    """A table, one line per endpoint; then what to do about each problem, and a summary."""
    rows = [("mirror", "what", "result", "url")]
    rows += [(o.endpoint.mirror, o.endpoint.what, o.state, o.endpoint.url) for o in outcomes]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        "  ".join(
            [*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)), row[3]]
        )
        for row in rows
    ]
    problems = [o for o in outcomes if not o.ok]
    lines += [f"  {o.endpoint.mirror} {o.endpoint.what}: {o.detail}" for o in problems]
    lines.append(f"{len(outcomes) - len(problems)} of {len(outcomes)} endpoints answer")
    return "\n".join(lines)
