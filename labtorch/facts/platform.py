"""The conda platform of a machine, from what ``uname`` (or Python's ``platform``) says (pure).

The one mapping from an OS and a machine architecture to the platform names that conda and the
rules use: the host state, ``labtorch plan`` on this machine and the rules all read it here.
"""

from __future__ import annotations

# (system, machine) as uname -s / uname -m print them, lower-cased -> conda platform.
_PLATFORMS = {
    ("linux", "x86_64"): "linux-64",
    ("linux", "amd64"): "linux-64",
    ("linux", "aarch64"): "linux-aarch64",
    ("linux", "arm64"): "linux-aarch64",
    ("darwin", "arm64"): "osx-arm64",
    ("darwin", "x86_64"): "osx-64",
    ("windows", "amd64"): "win-64",
    ("windows", "x86_64"): "win-64",
}
# Every subdir a conda channel has: the platforms, and noarch.
CONDA_SUBDIRS = frozenset({*_PLATFORMS.values(), "noarch"})
# The machine name that release data keys its floors by (glibc, macOS) for each platform.
_MACHINES = {
    "linux-64": "x86_64",
    "linux-aarch64": "aarch64",
    "osx-arm64": "arm64",
    "osx-64": "x86_64",
    "win-64": "x86_64",
}


def conda_platform(system: str, machine: str) -> str:
    """``Linux``/``x86_64`` -> ``linux-64``; an unknown pair falls back by OS (64-bit x86)."""
    key = (system.lower(), machine.lower())
    if key in _PLATFORMS:
        return _PLATFORMS[key]
    if key[0] == "darwin":
        return "osx-64"
    if key[0].startswith(("windows", "win32", "cygwin", "msys", "mingw")):
        return "win-64"
    return "linux-64"


def platform_machine(platform: str) -> str:
    """The machine architecture of a conda platform: ``linux-aarch64`` -> ``aarch64``."""
    return _MACHINES.get(platform, "x86_64")
