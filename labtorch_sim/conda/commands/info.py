"""``conda info``: installation, configuration and host facts (the keys of conda-cli.md §3.2)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from importlib import metadata
from typing import Any

from labtorch_sim.conda import CONDA_VERSION, PLATFORM, SUBDIRS, output
from labtorch_sim.conda.commands import envs
from labtorch_sim.conda.context import Context
from labtorch_sim.conda.virtual import virtual_packages


def _requests_version() -> str | None:
    try:
        return metadata.version("requests")
    except metadata.PackageNotFoundError:
        return None


def _python_version() -> str:
    v = sys.version_info
    return f"{v.major}.{v.minor}.{v.micro}.{v.releaselevel}.{v.serial}"


def _user_agent(context: Context, virtual: dict[str, str]) -> str:
    parts = [
        f"conda/{CONDA_VERSION}",
        f"requests/{_requests_version()}",
        f"{platform.python_implementation()}/{platform.python_version()}",
        f"Linux/{platform.release()}",
        f"glibc/{virtual.get('__glibc', '')}",
        f"solver/{context.solver}",
    ]
    return " ".join(parts)


def info(context: Context) -> dict[str, Any]:
    """The ``conda info --json`` object."""
    virtual = virtual_packages(context.environ, context.override_virtual_packages)
    versions = {v.name: v.version for v in virtual}
    channels = context.channel_config.expand(context.channels)
    root = str(context.root_prefix)
    active = context.active_prefix
    return {
        **envs.listing(context),
        "GID": os.getgid(),
        "UID": os.getuid(),
        "active_prefix": active,
        "active_prefix_name": os.path.basename(active) if active else None,
        "av_data_dir": f"{root}/etc/conda",
        "av_metadata_url_base": None,
        "channels": [url for channel in channels for url in channel.urls(SUBDIRS)],
        "conda_build_version": "not installed",
        "conda_env_version": CONDA_VERSION,
        "conda_location": os.path.dirname(os.path.dirname(__file__)),
        "conda_prefix": root,
        "conda_shlvl": int(context.environ.get("CONDA_SHLVL", "-1")),
        "conda_version": CONDA_VERSION,
        "config_files": context.config_files,
        "default_prefix": active or root,
        "env_vars": {k: v for k, v in context.environ.items() if k.startswith("CONDA_")},
        "envs_dirs": [str(p) for p in context.envs_dirs],
        "netrc_file": None,
        "notices_cache_dir": str(context.home / ".cache" / "conda" / "notices"),
        "offline": context.offline,
        "pkgs_dirs": [str(p) for p in context.pkgs_dirs],
        "platform": PLATFORM,
        "python_version": _python_version(),
        "rc_path": str(context.user_rc_path),
        "requests_version": _requests_version(),
        "root_prefix": root,
        "root_writable": context.root_writable,
        "site_dirs": [],
        "solver": {
            "default": context.solver == "libmamba",
            "name": context.solver,
            "user_agent": f"solver/{context.solver}",
        },
        "sys.executable": sys.executable,
        "sys.prefix": sys.prefix,
        "sys.version": sys.version,
        "sys_rc_path": str(context.sys_rc_path),
        "tmp_dir": tempfile.gettempdir(),
        "user_agent": _user_agent(context, versions),
        "user_rc_path": str(context.user_rc_path),
        "virtual_pkgs": [v.triple() for v in virtual],
    }


def run(context: Context, args: argparse.Namespace) -> int:
    if args.envs:
        return envs.run(context, args)
    data = info(context)
    if args.json:
        output.emit_json(data)
        return 0
    rows = [
        ("active environment", data["active_prefix_name"] or "None"),
        ("conda version", data["conda_version"]),
        ("platform", data["platform"]),
        ("virtual packages", ", ".join("=".join(v) for v in data["virtual_pkgs"])),
        (
            "base environment",
            f"{data['root_prefix']}  (writable)" if data["root_writable"] else data["root_prefix"],
        ),
        ("channel URLs", "\n".join(data["channels"]) or "(none)"),
        ("package cache", "\n".join(data["pkgs_dirs"])),
        ("envs directories", "\n".join(data["envs_dirs"])),
        ("user config file", data["user_rc_path"]),
        ("populated config files", "\n".join(data["config_files"])),
    ]
    for label, value in rows:
        lines = str(value).splitlines() or [""]
        print(f"{label:>27} : {lines[0]}")
        for line in lines[1:]:
            print(f"{'':>27}   {line}")
    return 0
