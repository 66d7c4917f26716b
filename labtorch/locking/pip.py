"""The pip solve of a lock class, with uv on the controller.

``uv pip compile`` resolves for another platform and Python (``--python-platform``,
``--python-version``) against the mirror's PyPI and the variant's wheel page, and writes a
PEP 751 ``pylock.toml`` with each file's URL and sha256 (``--generate-hashes``). Of each package
the wheel the target installs is kept: hosts then install those URLs, hash-checked, with no index
and no resolution.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import Marker
from packaging.tags import Tag, compatible_tags, cpython_tags, parse_tag

from labtorch.locking.conda import SolveError
from labtorch.rules.locks import LockClass, LockedPackage, normalize

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

UV_TIMEOUT_S = 600


def uv_binary() -> str:
    """uv's executable, from the ``uv`` package of the ``lock`` extra."""
    try:
        from uv import find_uv_bin
    except ImportError:
        raise SolveError(
            "uv is not installed: pip install 'labtorch[lock]' (uv resolves pip locks)"
        ) from None
    return find_uv_bin()


def target_tags(target: str, python: str) -> list[Tag]:
    """The wheel tags a CPython ``python`` on ``target`` (``x86_64-manylinux_2_36``) installs,
    most preferred first, as pip orders them."""
    arch, _, manylinux = target.partition("-")
    newest = int(manylinux.rsplit("_", 1)[-1])
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(newest, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    platforms = [
        name
        for platform in platforms
        for name in (platform, *((f"{legacy[int(platform.split('_')[2])]}_{arch}",)
                                 if int(platform.split("_")[2]) in legacy else ()))
    ]  # fmt: skip
    platforms.append(f"linux_{arch}")
    version = tuple(int(part) for part in python.split("."))[:2]
    return [
        *cpython_tags(version, platforms=platforms),
        *compatible_tags(version, f"cp{version[0]}{version[1]}", platforms=platforms),
    ]


def _environment(target: str, python: str) -> dict[str, str]:
    arch = target.partition("-")[0]
    return {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": arch,
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_version": f"{python}.0",
    }


def _best_wheel(package: dict, tags: list[Tag]) -> dict | None:
    rank = {tag: index for index, tag in enumerate(tags)}
    best, best_rank = None, len(rank)
    for wheel in package.get("wheels") or ():
        filename = wheel["url"].rsplit("/", 1)[-1]
        name_tags = filename.removesuffix(".whl").split("-")[-3:]
        found = min((rank.get(t, len(rank)) for t in parse_tag("-".join(name_tags))), default=None)
        if found is not None and found < best_rank:
            best, best_rank = wheel, found
    return best


def packages_from_pylock(text: str, target: str, python: str) -> list[LockedPackage]:
    """The target's wheel of each package of a ``pylock.toml``, with its sha256."""
    data = tomllib.loads(text)
    tags = target_tags(target, python)
    environment = _environment(target, python)
    packages = []
    for package in data.get("packages", []):
        marker = package.get("marker")
        if marker and not Marker(marker).evaluate(environment):
            continue
        wheel = _best_wheel(package, tags)
        if wheel is None:
            raise SolveError(
                f"{package['name']} {package.get('version')}: no wheel for {target} and Python "
                f"{python} (hosts install wheels only, with no build)"
            )
        sha256 = (wheel.get("hashes") or {}).get("sha256")
        if not sha256:
            raise SolveError(f"{wheel['url']}: no sha256 from the index or a download")
        packages.append(
            LockedPackage(normalize(package["name"]), str(package["version"]), None,
                          wheel["url"], sha256)
        )  # fmt: skip
    return packages


def compile_command(lock: LockClass, target: str, requirements: Path, output: Path) -> list[str]:
    """The ``uv pip compile`` that resolves ``lock`` for ``target``."""
    command = [
        uv_binary(), "pip", "compile", str(requirements), "-o", str(output),
        "--format", "pylock.toml", "--generate-hashes", "--quiet",
        "--python-platform", target, "--python-version", lock.python,
        "--index-url", str(lock.index_url),
    ]  # fmt: skip
    if lock.wheel_index:
        layout, url = lock.wheel_index
        command += ["--find-links" if layout == "flat" else "--extra-index-url", url]
    return command


def solve_pip(lock: LockClass, target: str) -> list[LockedPackage]:
    """The packages of a pip class for ``target`` (``x86_64-manylinux_2_36``)."""
    with tempfile.TemporaryDirectory(prefix="labtorch-uv-") as scratch:
        requirements = Path(scratch) / "requirements.in"
        requirements.write_text("".join(f"{spec}\n" for spec in lock.specs))
        output = Path(scratch) / "pylock.toml"
        command = compile_command(lock, target, requirements, output)
        # A cache of its own: the mirror's index is read now, never an old copy of it.
        command += ["--cache-dir", str(Path(scratch) / "cache")]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=UV_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise SolveError(f"uv pip compile took over {UV_TIMEOUT_S} s") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise SolveError("uv pip compile failed: " + " ".join(lines[-6:]))
        return packages_from_pylock(output.read_text(), target, lock.python)
