"""``conda config --show [KEY...]`` and ``conda config --show-sources``: the merged settings."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from labtorch_sim.conda import output
from labtorch_sim.conda.context import Context
from labtorch_sim.conda.errors import ArgumentError

# conda's defaults for settings the stand-in does not act on but tools commonly read.
_PASSIVE_DEFAULTS: dict[str, Any] = {
    "always_yes": None,
    "auto_activate": True,
    "auto_update_conda": True,
    "channel_priority": "flexible",
    "notify_outdated_conda": True,
    "number_channel_notices": 5,
    "offline": False,
    "repodata_fns": ["current_repodata.json", "repodata.json"],
    "show_channel_urls": None,
    "ssl_verify": True,
}


def shown(context: Context) -> dict[str, Any]:
    """Every setting with its merged value; channel settings parsed as conda dumps channels."""
    channels = context.channel_config
    return {
        **_PASSIVE_DEFAULTS,
        **context.settings,
        "add_pip_as_python_dependency": context.add_pip_as_python_dependency,
        "channel_alias": channels.alias.dump(),
        "channels": context.channels,
        "custom_channels": {k: c.dump() for k, c in sorted(channels.custom_channels.items())},
        "default_channels": [c.dump() for c in channels.default_channels],
        "envs_dirs": [str(p) for p in context.envs_dirs],
        "override_virtual_packages": context.override_virtual_packages,
        "pkgs_dirs": [str(p) for p in context.pkgs_dirs],
        "solver": context.solver,
    }


def _show(context: Context, keys: list[str]) -> dict[str, Any]:
    values = shown(context)
    unknown = [key for key in keys if key not in values]
    if unknown:
        listed = "\n".join(f"  - {key}" for key in unknown)
        raise ArgumentError(f"Invalid configuration parameters: \n{listed}")
    return {key: values[key] for key in keys} if keys else values


def _sources(context: Context) -> dict[str, Any]:
    return {source.name: dict(source.data) for source in context.sources}


def run(context: Context, args: argparse.Namespace) -> int:
    if args.show is not None:
        data = _show(context, args.show)
    elif args.show_sources:
        data = _sources(context)
    else:
        raise ArgumentError("conda config: only --show and --show-sources are simulated")
    if args.json:
        output.emit_json(data)
    elif args.show_sources and args.show is None:
        for name, values in data.items():
            print(f"==> {name} <==\n{yaml.safe_dump(values, sort_keys=True)}")
    else:
        print(yaml.safe_dump(data, sort_keys=True), end="")
    return 0
