"""The condarc labtorch owns: which keys it sets, and a merge that keeps everything else.

labtorch owns ``channels``, ``default_channels``, ``show_channel_urls`` and its entries in
``custom_channels``; every other key (and every other custom channel) stays as the user wrote it,
comments and layout included: a change is written with ruamel.yaml's round trip, which keeps
them (PyYAML drops every comment). Checking whether anything must change stays with PyYAML's C
loader, the fast path of a rerun.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import yaml

from labtorch.data.files import YAML_LOADER
from labtorch.data.mirrors import DEFAULTS, Mirror, MirrorCatalog
from labtorch.rules.model import Plan


class CondarcError(ValueError):
    """The existing condarc cannot be read as a YAML mapping."""


@dataclass(frozen=True)
class CondaMirrorConfig:
    """The keys labtorch sets: named channels, what ``defaults`` means, and where channels live."""

    channels: tuple[str, ...]
    default_channels: tuple[str, ...]
    custom_channels: dict[str, str]


def mirror_config(plan: Plan, mirror: Mirror, catalog: MirrorCatalog) -> CondaMirrorConfig:
    """The condarc keys that make a plan's channels resolve to the mirror (or the carrier of a
    channel the mirror lacks, like SUSTech for ``nvidia``)."""
    custom = {}
    for channel in plan.channels:
        if channel == DEFAULTS:
            continue
        carrier = catalog.mirror_for_channel(channel, mirror.name)
        if carrier is not None and carrier.custom_channels:
            custom[channel] = carrier.custom_channels
    return CondaMirrorConfig(plan.channels, mirror.default_channels, custom)


def _load(text: str | None) -> dict:
    if not text or not text.strip():
        return {}
    try:
        data = yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CondarcError(f"not valid YAML{where}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CondarcError("not a YAML mapping")
    return data


def _merged(current: dict, config: CondaMirrorConfig) -> dict:
    """The condarc after labtorch's keys are applied to ``current`` (left as it was)."""
    data = dict(current)
    custom = data.get("custom_channels") or {}
    if not isinstance(custom, dict):
        raise CondarcError("custom_channels is not a mapping")
    data["channels"] = list(config.channels)
    data["default_channels"] = list(config.default_channels)
    data["custom_channels"] = {**custom, **config.custom_channels}
    data["show_channel_urls"] = True
    return data


def condarc_change(current: str | None, config: CondaMirrorConfig) -> str | None:
    """The new condarc text, or None when ``current`` already says what labtorch wants."""
    have = _load(current)
    wanted = _merged(have, config)
    if current is not None and have == wanted:
        return None
    if not have:
        return yaml.safe_dump(wanted, sort_keys=False, default_flow_style=False)
    return _round_trip(current, wanted)


def _round_trip(current: str, wanted: dict) -> str:
    """``current`` with labtorch's keys set to their ``wanted`` values, every other line kept."""
    from ruamel.yaml import YAML

    loader = YAML()
    loader.preserve_quotes = True
    document = loader.load(current)
    for key in ("channels", "default_channels", "show_channel_urls"):
        document[key] = wanted[key]
    custom = document.get("custom_channels")
    if custom is None:
        document["custom_channels"] = wanted["custom_channels"]
    else:
        for name, url in wanted["custom_channels"].items():
            custom[name] = url
    out = io.StringIO()
    loader.dump(document, out)
    return out.getvalue()
