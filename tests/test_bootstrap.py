"""Miniforge on a host without conda: the installer for each platform, where it comes from, the
host state the next steps plan with, and the install script run for real against a mirror that
serves the lab's Miniforge release (good, corrupted, broken, missing)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from labtorch.data.mirrors import load_catalog, tuna_layout_mirror
from labtorch.deploy.bootstrap import NO_BOOTSTRAP, after_bootstrap
from labtorch.deploy.settings import Settings
from labtorch.facts.host_state import parse_host_state
from labtorch.rules.bootstrap import (
    MINIFORGE_CONDARC,
    Bootstrap,
    bootstrap_for,
    install_script,
    installer_for,
    prefix_for,
    sources,
)
from labtorch_sim import miniforge
from labtorch_sim.mirror import start_mirror, stop_mirror

TUNA = "https://mirrors.tuna.tsinghua.edu.cn/github-release/conda-forge/miniforge/LatestRelease"
BFSU = "https://mirrors.bfsu.edu.cn/github-release/conda-forge/miniforge/LatestRelease"
GITHUB = "https://github.com/conda-forge/miniforge/releases/latest/download"


@pytest.mark.parametrize(
    ("system", "machine", "installer"),
    [
        ("Linux", "x86_64", "Miniforge3-Linux-x86_64.sh"),
        ("Linux", "aarch64", "Miniforge3-Linux-aarch64.sh"),
        ("Linux", "arm64", "Miniforge3-Linux-aarch64.sh"),
        ("Linux", "ppc64le", "Miniforge3-Linux-ppc64le.sh"),
        ("Darwin", "arm64", "Miniforge3-MacOSX-arm64.sh"),
        ("Darwin", "x86_64", "Miniforge3-MacOSX-x86_64.sh"),
        ("Windows", "AMD64", None),
        ("Linux", "riscv64", None),
    ],
)
def test_the_installer_follows_the_host(system: str, machine: str, installer: str | None) -> None:
    assert installer_for(system, machine) == installer


def test_the_prefix_is_opt_conda_as_root_and_miniforge3_in_home_otherwise() -> None:
    assert prefix_for(True, "/root") == "/opt/conda"
    assert prefix_for(False, "/home/ada/") == "/home/ada/miniforge3"


def test_sources_are_the_mirror_then_fallbacks_and_upstream_only_as_last_resort() -> None:
    catalog = load_catalog()
    assert sources(catalog, ["tuna", "bfsu"]) == (TUNA, BFSU)
    # No mirror of the run carries Miniforge: GitHub's releases.
    assert sources(catalog, ["sustech", "aliyun"]) == (GITHUB,)
    # A site that wants GitHub after its mirrors says so.
    assert sources(catalog, ["tuna", "upstream"]) == (TUNA, GITHUB)
    site = catalog.with_mirror(tuna_layout_mirror("site", "http://cache.lab:3143/"))
    assert sources(site, ["site", "tuna", "site"]) == (
        "http://cache.lab:3143/github-release/conda-forge/miniforge/LatestRelease",
        TUNA,
    )


def test_no_bootstrap_where_there_is_no_installer_or_no_source() -> None:
    catalog = load_catalog()
    windows = bootstrap_for("Windows", "AMD64", True, "C:/", catalog, ["tuna"])
    assert isinstance(windows, str) and "no shell installer for Windows AMD64" in windows
    without = catalog.with_mirror(replace(catalog["upstream"], miniforge=None))
    assert "no mirror of this run carries" in bootstrap_for(
        "Linux", "x86_64", True, "/root", without, ["aliyun"]
    )
    plan = bootstrap_for("Linux", "x86_64", False, "/home/ada", catalog, ["tuna"])
    assert plan == Bootstrap("/home/ada/miniforge3", "Miniforge3-Linux-x86_64.sh", (TUNA,))
    assert plan.conda == "/home/ada/miniforge3/bin/conda"


def _state(uid: str = "0", condarc_section: list[str] | None = None):
    """A host state as the LabHost fact reads a host without conda."""
    lines = [
        "@@labtorch system", "Linux", "@@labtorch machine", "x86_64", "@@labtorch uid", uid,
        "@@labtorch home", "/root" if uid == "0" else "/home/ada", "@@labtorch conda",
        "@@labtorch condarc-path", *(condarc_section or []), "@@labtorch env-path", "/envs/torch",
        "@@labtorch pip-conf-path", "/envs/torch/pip.conf",
    ]  # fmt: skip
    return parse_host_state(lines)


def test_the_next_steps_plan_with_the_conda_the_bootstrap_makes() -> None:
    plan = Bootstrap("/opt/conda", "Miniforge3-Linux-x86_64.sh", (TUNA,))
    state = after_bootstrap(_state(), plan, Settings())
    assert state.conda_exe == "/opt/conda/bin/conda"
    assert state.conda_root == "/opt/conda"
    # The root's condarc, as Miniforge writes it: labtorch's keys are merged into it, and
    # Miniforge's own file is kept once as the backup.
    assert (state.condarc_path, state.condarc) == ("/opt/conda/.condarc", MINIFORGE_CONDARC)
    assert state.condarc_backup is False
    assert state.env_path == "/opt/conda/envs/torch"
    assert state.env_prefix is None and state.env_packages is None
    assert state.pip_conf_path == "/opt/conda/envs/torch/pip.conf"


def test_a_user_condarc_the_snapshot_read_is_kept() -> None:
    user = _state("1000", ["/home/ada/.condarc"])
    plan = Bootstrap("/home/ada/miniforge3", "Miniforge3-Linux-x86_64.sh", (TUNA,))
    state = after_bootstrap(user, plan, replace(Settings(), pip_scope="user"))
    assert state.condarc_path == "/home/ada/.condarc"
    assert state.env_path == "/home/ada/miniforge3/envs/torch"
    assert state.pip_conf_path == user.pip_conf_path


def test_bootstrap_off_says_how_to_turn_it_on() -> None:
    assert "torch_conda_bootstrap = True" in NO_BOOTSTRAP


# ---- the install script, run for real ---------------------------------------------------------


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory):
    """A mirror serving the lab's Miniforge release at ``good/``, and next to it the same release
    with a corrupted installer (``corrupt/``: the published checksum no longer matches) and an
    installer that fails half-way but matches its checksum (``broken/``)."""
    root = tmp_path_factory.mktemp("miniforge-root")
    miniforge.build_miniforge_release(root / "good")
    latest = root / "good" / miniforge.TREE / miniforge.LATEST
    corrupt = root / "corrupt"
    shutil.copytree(latest, corrupt)
    with (corrupt / miniforge.UNVERSIONED).open("ab") as installer:
        installer.write(b"# one more line\n")
    broken = root / "broken"
    broken.mkdir()
    script = b'#!/bin/sh\nmkdir -p "$3/bin"; : > "$3/bin/x"; echo "ERROR: disk full" >&2; exit 3\n'
    (broken / miniforge.UNVERSIONED).write_bytes(script)
    digest = hashlib.sha256(script).hexdigest()
    (broken / f"{miniforge.UNVERSIONED}.sha256").write_text(f"{digest}  x.sh\n")
    state = tmp_path_factory.mktemp("miniforge-mirror")
    process = start_mirror(root, state)
    yield process.url, f"{process.url}/good/{miniforge.TREE}/{miniforge.LATEST}"
    stop_mirror(state)


def _install(tmp_path: Path, prefix: Path, *bases: str) -> subprocess.CompletedProcess[str]:
    script = install_script(Bootstrap(str(prefix), miniforge.UNVERSIONED, bases))
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    return subprocess.run(
        ["sh", "-c", script],
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(temp), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_release_installs_after_its_checksum_matches(tmp_path: Path, releases) -> None:
    url, good = releases
    prefix = tmp_path / "conda"
    done = _install(tmp_path, prefix, f"{url}/missing", good)
    assert done.returncode == 0, done.stderr
    assert f"Miniforge installed in {prefix} from {good}/{miniforge.UNVERSIONED}" in done.stdout
    assert (prefix / "bin" / "conda").stat().st_mode & 0o111
    assert (prefix / ".condarc").read_text() == MINIFORGE_CONDARC
    assert (
        f'export CONDA_EXE="{prefix}/bin/conda"' in (prefix / "etc/profile.d/conda.sh").read_text()
    )
    assert list((tmp_path / "tmp").iterdir()) == []
    # The host state finds it as a Miniforge: conda's record names its version.
    assert list((prefix / "conda-meta").glob("conda-26.7.1-*.json"))


def test_a_wrong_checksum_everywhere_installs_nothing(tmp_path: Path, releases) -> None:
    url, _ = releases
    prefix = tmp_path / "conda"
    done = _install(tmp_path, prefix, f"{url}/corrupt", f"{url}/missing")
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.startswith("labtorch: no Miniforge installer passed its checksum, nothing")
    assert f"{url}/corrupt/{miniforge.UNVERSIONED}: sha256 " in line
    assert "is not the published" in line
    assert f"{url}/missing/{miniforge.UNVERSIONED}.sha256: curl: (22)" in line
    assert not prefix.exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_failed_install_leaves_no_prefix(tmp_path: Path, releases) -> None:
    url, good = releases
    prefix = tmp_path / "conda"
    # The broken installer passes its checksum; the good release behind it is never tried.
    done = _install(tmp_path, prefix, f"{url}/broken", good)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"labtorch: the Miniforge installer from {url}/broken failed, {prefix} removed: "
        "ERROR: disk full"
    )
    assert not prefix.exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_what_is_at_the_prefix_is_never_touched(tmp_path: Path, releases) -> None:
    _, good = releases
    prefix = tmp_path / "conda"
    prefix.mkdir()
    (prefix / "mine").write_text("a user's file\n")
    done = _install(tmp_path, prefix, good)
    assert done.returncode == 1
    assert f"labtorch: {prefix} exists but holds no conda" in done.stderr
    assert [p.name for p in prefix.iterdir()] == ["mine"]
    # A conda that appeared since the snapshot is left as it is, and the step passes.
    (prefix / "bin").mkdir()
    (prefix / "bin" / "conda").write_text("#!/bin/sh\n")
    (prefix / "bin" / "conda").chmod(0o755)
    done = _install(tmp_path, prefix, good)
    assert done.returncode == 0
    assert "left as it is" in done.stdout
    assert sorted(p.name for p in prefix.iterdir()) == ["bin", "mine"]


def test_the_stand_in_installer_refuses_an_existing_prefix_as_constructor_does(
    tmp_path: Path,
) -> None:
    installer = tmp_path / miniforge.UNVERSIONED
    installer.write_bytes(miniforge.installer_bytes())
    (tmp_path / "there").mkdir()
    done = subprocess.run(
        ["bash", str(installer), "-b", "-p", str(tmp_path / "there")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"ERROR: File or directory already exists: '{tmp_path / 'there'}'\n"
        "If you want to update an existing installation, use the -u option.\n"
    )


def test_the_release_is_laid_out_as_tuna_syncs_it(tmp_path: Path) -> None:
    miniforge.build_miniforge_release(tmp_path)
    tree = tmp_path / miniforge.TREE
    assert (tree / miniforge.LATEST).resolve() == (tree / miniforge.RELEASE).resolve()
    names = sorted(p.name for p in (tree / miniforge.RELEASE).iterdir())
    assert names == [
        f"Miniforge3-{miniforge.RELEASE}-Linux-x86_64.sh",
        f"Miniforge3-{miniforge.RELEASE}-Linux-x86_64.sh.sha256",
        "Miniforge3-Linux-x86_64.sh",
        "Miniforge3-Linux-x86_64.sh.sha256",
    ]
    data = (tree / miniforge.RELEASE / miniforge.VERSIONED).read_bytes()
    published = (tree / miniforge.RELEASE / f"{miniforge.VERSIONED}.sha256").read_text()
    assert published == f"{hashlib.sha256(data).hexdigest()}  ./{miniforge.VERSIONED}\n"
    # Built again: the same bytes (the payload's times and owners are fixed).
    shutil.rmtree(tree)
    miniforge.build_miniforge_release(tmp_path)
    assert (tree / miniforge.RELEASE / miniforge.VERSIONED).read_bytes() == data
