"""What counts as "from the mirror": the URL prefixes an env's packages may have come from (pure).

A package is from the mirror when its URL is under one of:
- the plan's channels, PyPI index and wheel page on the configured mirror;
- the same channels on every other mirror of the catalog that carries them, upstream excepted
  (TUNA, BFSU, NJU, ... serve the same conda-forge: switching ``torch_mirror`` between them
  does not make a fleet's envs wrong);
- the configured fallback mirrors' channels and indexes.
Anything else (an upstream channel, a stale URL of a mirror that moved, a hand-installed file)
is reinstalled from the mirror by the next deploy.
"""

from __future__ import annotations

from labtorch.data.mirrors import DEFAULTS, UPSTREAM, MirrorCatalog
from labtorch.rules.fallback import mirror_urls
from labtorch.rules.model import Plan


def accepted_origins(plan: Plan, fallbacks: list[Plan], catalog: MirrorCatalog) -> list[str]:
    """The URL prefixes ``plan``'s packages may come from, first the plan's own."""
    prefixes = mirror_urls([plan, *fallbacks])
    for mirror in catalog.mirrors.values():
        if mirror.name == UPSTREAM:
            continue
        for channel in plan.channels:
            if channel == DEFAULTS:
                prefixes.extend(mirror.default_channels)
            elif mirror.carries(channel):
                prefixes.append(mirror.channel_url(channel))
    return list(dict.fromkeys(prefixes))
