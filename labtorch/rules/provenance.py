"""What counts as "from the mirror": the URL prefixes an env's packages may have come from (pure).

A package is from the mirror when its URL is under one of:
- the plan's channels, PyPI and wheel page on the configured mirror;
- the same channels on every other mirror of the catalog that carries them, upstream excepted
  (TUNA, BFSU, NJU, ... serve the same conda-forge: switching ``torch_mirror`` between them
  does not make a fleet's envs wrong);
- the configured fallback mirrors' channels, PyPI and wheel pages (accepted, with a note: the
  first mirror failed that install).
Anything else (an upstream channel or index, a stale URL of a mirror that moved, a file
installed by hand) is reinstalled from the mirror by the next deploy, and fails the probe.
A PyPI index counts by its root (``.../pypi/web`` for ``.../pypi/web/simple``): the simple
pages link the files under ``.../pypi/web/packages``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from labtorch.data.mirrors import DEFAULTS, UPSTREAM, MirrorCatalog
from labtorch.facts.host_state import InstalledPackage
from labtorch.facts.platform import CONDA_SUBDIRS
from labtorch.rules.model import Plan


@dataclass(frozen=True)
class Origins:
    """The URL prefixes packages may come from: the mirror's, and the fallbacks'."""

    mirror: tuple[str, ...]
    fallback: tuple[str, ...] = ()

    @property
    def accepted(self) -> tuple[str, ...]:
        return (*self.mirror, *self.fallback)


def _index_root(url: str) -> str:
    stripped = url.rstrip("/")
    return stripped[: -len("/simple")] if stripped.endswith("/simple") else stripped


def plan_urls(plan: Plan) -> list[str]:
    """Every URL a plan fetches from: its channels, its pins' sources, its PyPI (by root)."""
    urls = [*plan.channel_urls, *(pin.url for pin in (*plan.packages, *plan.toolkit))]
    if plan.index_url:
        urls.append(_index_root(plan.index_url))
    if plan.wheel_index:
        urls.append(plan.wheel_index[1])
    return [url for url in urls if url]


def origins_for(plan: Plan, fallbacks: Sequence[Plan], catalog: MirrorCatalog) -> Origins:
    """The prefixes ``plan``'s packages may come from; ``fallbacks`` are the usable fallback
    mirrors' plans."""
    own = plan_urls(plan)
    # A fallback attempt may share the plan's own URLs (a fallback URL without wheel pages is
    # tried with the mirror's wheel page; SUSTech's nvidia serves TUNA and BFSU alike): a package
    # from there came from the mirror, not from the fallback.
    fallback = [
        url
        for url in dict.fromkeys(url for plan_ in fallbacks for url in plan_urls(plan_))
        if url not in own
    ]
    equals = []
    for other in catalog.mirrors.values():
        if other.name == UPSTREAM:
            continue
        for channel in plan.channels:
            if channel == DEFAULTS:
                equals.extend(other.default_channels)
            elif other.carries(channel):
                equals.append(other.channel_url(channel))
    # A configured fallback is noted when it serves, even where the catalog counts it as the
    # mirror's equal: the first mirror failed, and the admin should know.
    mirror = [*own, *(url for url in equals if url not in fallback)]
    return Origins(tuple(dict.fromkeys(mirror)), tuple(fallback))


def is_under(url: str, prefixes: Sequence[str]) -> bool:
    """Whether ``url`` is one of ``prefixes`` or lies below one of them."""
    return any(url == p or url.startswith(p.rstrip("/") + "/") for p in prefixes)


def foreign_packages(
    installed: Mapping[str, InstalledPackage], accepted: Sequence[str]
) -> list[InstalledPackage]:
    """Every package of an env, dependencies included, whose recorded URL lies outside
    ``accepted``, by name. A package without a recorded URL (pip's index installs) is not
    judged here."""
    return [
        package
        for _, package in sorted(installed.items())
        if package.url is not None and not is_under(package.url, accepted)
    ]


def foreign_line(package: InstalledPackage) -> str:
    """What the deploy says of a package from outside the mirror."""
    return f"{package.name} came from {package.url}, not from the mirror"


def channel_of(url: str) -> str | None:
    """The conda channel a package URL names: the path segment before its subdir
    (``conda-forge`` of ``https://conda.anaconda.org/conda-forge/noarch/x.conda``), or None."""
    parts = urlsplit(url).path.rstrip("/").split("/")
    for index in range(len(parts) - 2, 0, -1):
        if parts[index] in CONDA_SUBDIRS:
            return parts[index - 1] or None
    return None
