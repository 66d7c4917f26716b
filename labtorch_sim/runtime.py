"""The runtime every simulated host mounts, and the Miniconda-like install that uses it.

Hosts see the real ``/usr`` but not the controller's virtualenv, so the conda stand-in runs on
Debian's ``/usr/bin/python3`` with ``PYTHONPATH`` at ``<runtime>/site``: py-rattler (an abi3
wheel), PyYAML and the labtorch sources, copied there by :func:`build_runtime`. The lab
bind-mounts that directory read-only at :data:`RUNTIME_MOUNT`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import labtorch_sim
from labtorch_sim.conda import CONDA_VERSION

RUNTIME_MOUNT = "/opt/labtorch-sim"
HOST_PYTHON = "/usr/bin/python3"
# The distributions the stand-in imports, pinned as in pyproject.toml's ``sim`` extra.
DISTRIBUTIONS = {"py-rattler": "0.28.0", "PyYAML": None}
_STAMP = "stamp"
_SITE = "site"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")

_WRAPPER = """#!/bin/sh
# conda of the labtorch simulated lab: py-rattler behind conda's command line.
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
LABTORCH_SIM_CONDA_ROOT=$root PYTHONPATH={mount}/site exec {python} -m labtorch_sim.conda "$@"
"""

# Enough of Miniconda's conda.sh for `. conda.sh; conda activate NAME` in scripts.
_CONDA_SH = """# conda shell support of the labtorch simulated lab (activation by PATH only).
export CONDA_EXE="{root}/bin/conda"
export CONDA_PYTHON_EXE="{python}"
export CONDA_SHLVL="${{CONDA_SHLVL:-0}}"

__conda_prefix() {{
    case "$1" in
        ""|base|root) echo "{root}" ;;
        */*) echo "$1" ;;
        *) echo "{root}/envs/$1" ;;
    esac
}}

conda() {{
    case "$1" in
        activate)
            CONDA_PREFIX=$(__conda_prefix "$2")
            if [ ! -d "$CONDA_PREFIX/conda-meta" ]; then
                echo "EnvironmentNameNotFound: $2" >&2
                return 1
            fi
            export CONDA_PREFIX CONDA_DEFAULT_ENV="${{2:-base}}" CONDA_SHLVL=1
            export PATH="$CONDA_PREFIX/bin:$PATH" ;;
        deactivate)
            PATH=$(echo "$PATH" | sed "s|$CONDA_PREFIX/bin:||")
            unset CONDA_PREFIX CONDA_DEFAULT_ENV
            export PATH CONDA_SHLVL=0 ;;
        *) "$CONDA_EXE" "$@" ;;
    esac
}}
"""


def _package_dir() -> Path:
    return Path(labtorch_sim.__file__).parent


def _fingerprint() -> str:
    """Changes whenever the copied distributions or any source file of the lab change."""
    digest = hashlib.sha256()
    for name in DISTRIBUTIONS:
        digest.update(f"{name}=={_installed_version(name)}\n".encode())
    root = _package_dir()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _copy_distribution(name: str, site: Path) -> None:
    """Copy an installed distribution's files (those under site-packages) into ``site``."""
    distribution = metadata.distribution(name)
    for file in distribution.files or ():
        if file.parts[0] == ".." or "__pycache__" in file.parts:
            continue
        target = site / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(distribution.locate_file(file), target)


def _pip_install(name: str, version: str | None, site: Path) -> None:
    """Install a distribution that the controller lacks from PyPI (or pip's cache)."""
    requirement = f"{name}=={version}" if version else name
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*command, "--target", str(site), requirement], check=True)


def _populate(site: Path) -> None:
    for name, version in DISTRIBUTIONS.items():
        installed = _installed_version(name)
        if installed is not None and version in (None, installed):
            _copy_distribution(name, site)
        else:
            _pip_install(name, version, site)
    shutil.copytree(_package_dir(), site / "labtorch_sim", ignore=_IGNORED)
    # The mount is read-only, so hosts could not cache bytecode themselves.
    if Path(HOST_PYTHON).exists():
        subprocess.run([HOST_PYTHON, "-m", "compileall", "-q", "-j0", str(site)], check=True)


def build_runtime(runtime_dir: Path) -> None:
    """Fill ``runtime_dir/site`` for the stand-in; does nothing when it is already up to date."""
    stamp = runtime_dir / _STAMP
    fingerprint = _fingerprint()
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return
    staging = runtime_dir / f"{_SITE}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _populate(staging)
    shutil.rmtree(runtime_dir / _SITE, ignore_errors=True)
    staging.rename(runtime_dir / _SITE)
    stamp.write_text(fingerprint)


def _write(path: Path, text: str, executable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755 if executable else 0o644)


_CONDA_RECORD = {
    "name": "conda",
    "version": CONDA_VERSION,
    "build": "py311_0",
    "build_number": 0,
    "subdir": "linux-64",
    "depends": [],
    "fn": f"conda-{CONDA_VERSION}-py311_0.conda",
    "url": f"https://repo.anaconda.com/pkgs/main/linux-64/conda-{CONDA_VERSION}-py311_0.conda",
    "channel": "https://repo.anaconda.com/pkgs/main/linux-64",
    "md5": "0" * 32,
    "files": [],
    "paths_data": {"paths": [], "paths_version": 1},
    "requested_spec": "conda",
}


def conda_files(
    host_root: str, record: dict | None = None, runtime_mount: str = RUNTIME_MOUNT
) -> dict[str, tuple[str, bool]]:
    """The files of a conda root at ``host_root`` (the path the host sees) whose ``conda`` runs
    the stand-in: relative path -> (text, executable). Empty directories (``envs``, ``pkgs``)
    are not files: the caller makes them. ``record`` is base's conda-meta record of conda."""
    record = record or _CONDA_RECORD
    wrapper = _WRAPPER.format(mount=runtime_mount, python=HOST_PYTHON)
    return {
        "bin/conda": (wrapper, True),
        "condabin/conda": (wrapper, True),
        "etc/profile.d/conda.sh": (_CONDA_SH.format(root=host_root, python=HOST_PYTHON), False),
        "conda-meta/history": ("", False),
        # The base env holds conda itself; tools read its version from this record's name.
        f"conda-meta/{record['fn'].removesuffix('.conda')}.json": (
            json.dumps(record, indent=2),
            False,
        ),
    }


def install_conda(opt_dir: Path, runtime_mount: str = RUNTIME_MOUNT) -> None:
    """Lay out a Miniconda-like ``opt_dir/conda`` whose ``conda`` runs the stand-in.

    ``opt_dir`` is a host's ``/opt`` as the controller sees it; paths written into files are
    those the host sees. No ``.condarc`` is written, as Miniconda writes none.
    """
    root = opt_dir / "conda"
    for relative, (text, executable) in conda_files(
        f"/opt/{root.name}", runtime_mount=runtime_mount
    ).items():
        _write(root / relative, text, executable=executable)
    for directory in ("envs", "pkgs"):
        (root / directory).mkdir(parents=True, exist_ok=True)
