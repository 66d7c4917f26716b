"""The simulated lab's conda stand-in, run as a host runs it, against a channel served on loopback.

The stand-in runs through the ``bin/conda`` wrapper of an ``install_conda`` layout, on Debian's
``/usr/bin/python3`` with the runtime ``build_runtime`` makes, so these tests cover what hosts run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labtorch_sim.conda import condarc
from labtorch_sim.conda.channels import ChannelConfig
from labtorch_sim.condapkg import CONDA, CondaPackage, index_channel, write_package
from labtorch_sim.mirror import read_log, set_fault, start_mirror, stop_mirror
from labtorch_sim.runtime import build_runtime, install_conda

CUDA_BUILD = "py3.11_cuda12.1_cudnn8.9.2_0"
CPU_BUILD = "py3.11_cpu_0"
PYTHON_DEP = "python >=3.11,<3.12.0a0"

LIST_FIELDS = {
    "base_url", "build_number", "build_string", "channel", "dist_name", "name", "platform",
    "version",
}  # fmt: skip
FETCH_FIELDS = {
    "arch", "build", "build_number", "channel", "constrains", "depends", "fn", "license", "md5",
    "name", "noarch", "package_type", "platform", "sha256", "size", "subdir", "timestamp", "url",
    "version",
}  # fmt: skip
INFO_KEYS = {
    "GID", "UID", "active_prefix", "active_prefix_name", "av_data_dir", "av_metadata_url_base",
    "channels", "conda_build_version", "conda_env_version", "conda_location", "conda_prefix",
    "conda_shlvl", "conda_version", "config_files", "default_prefix", "env_vars", "envs",
    "envs_details", "envs_dirs", "netrc_file", "notices_cache_dir", "offline", "pkgs_dirs",
    "platform", "python_version", "rc_path", "requests_version", "root_prefix", "root_writable",
    "site_dirs", "solver", "sys.executable", "sys.prefix", "sys.version", "sys_rc_path",
    "tmp_dir", "user_agent", "user_rc_path", "virtual_pkgs",
}  # fmt: skip
NOT_FOUND_KEYS = {
    "caused_by", "channel_urls", "channels_formatted", "error", "exception_name",
    "exception_type", "message", "packages", "packages_formatted",
}  # fmt: skip
CHANNEL_DUMP_KEYS = {"auth", "location", "name", "package_filename", "platform", "scheme", "token"}
ENV_DETAIL_KEYS = {"name", "created", "last_modified", "active", "base", "frozen", "writable"}


def _stub(name: str, version: str, build: str, **fields: Any) -> CondaPackage:
    return CondaPackage(name, version, build, files={f"share/{name}/{build}": b"stub\n"}, **fields)


MUTEX: dict[str, Any] = {"subdir": "noarch", "build_number": 100}
CHANNELS = {
    "anaconda/cloud/pytorch": [
        _stub("python", "3.11.9", "h_stub_0"),
        _stub("pip", "24.0", "pyhd8ed1ab_0", subdir="noarch"),
        _stub("pytorch", "2.3.1", CUDA_BUILD, depends=(PYTHON_DEP, "pytorch-mutex 1.0 cuda")),
        _stub("pytorch", "2.3.1", CPU_BUILD, depends=(PYTHON_DEP, "pytorch-mutex 1.0 cpu")),
        _stub("pytorch-mutex", "1.0", "cuda", **MUTEX),
        _stub("pytorch-mutex", "1.0", "cpu", track_features="pytorch-cpu", **MUTEX),
    ],
    "anaconda/cloud/conda-forge": [
        _stub("cuda-driver-check", "1.0", "0", subdir="noarch", depends=("__cuda >=12.1",)),
        # A .conda package, as conda-forge ships them today.
        _stub("six", "1.16.0", "pyhd8ed1ab_0", subdir="noarch", extension=CONDA),
    ],
    "anaconda/pkgs/main": [_stub("zlib", "1.2.13", "h5eee18b_1")],
}


@dataclass(frozen=True)
class Mirror:
    url: str
    log: Path

    def requested_paths(self) -> list[str]:
        return [
            line.split('"')[1].split()[1]
            for line in self.log.read_text().splitlines()
            if '"GET ' in line
        ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/anaconda/pkgs/main/noarch/repodata.json", timeout=1)
            return
        except OSError:
            if server.poll() is not None:
                raise RuntimeError("http.server exited") from None
            time.sleep(0.05)
    raise RuntimeError("http.server did not start")


@pytest.fixture(scope="module")
def channel_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    for channel, packages in CHANNELS.items():
        for package in packages:
            write_package(package, root / channel)
        index_channel(root / channel)
    return root


@pytest.fixture(scope="module")
def mirror(channel_root: Path) -> Iterator[Mirror]:
    root = channel_root
    log = root.parent / f"{root.name}.log"
    port = _free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with log.open("w") as stream:
        server = subprocess.Popen(command, cwd=root, stdout=stream, stderr=stream)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(url, server)
        yield Mirror(url, log)
    finally:
        server.terminate()
        server.wait()


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("runtime")
    build_runtime(directory)
    return directory


@dataclass
class Host:
    """One simulated host: its ``/opt``, its ``$HOME``, and conda run as the host runs it."""

    opt: Path
    home: Path
    mirror: Mirror
    environ: dict[str, str]

    @property
    def root(self) -> Path:
        return self.opt / "conda"

    def conda(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / "bin" / "conda"), *args],
            env={**self.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def json(self, *args: str, rc: int = 0, **env: str) -> Any:
        result = self.conda(*args, "--json", **env)
        assert result.returncode == rc, result.stdout + result.stderr
        return json.loads(result.stdout)

    def write_host_file(self, cuda: str, kernel_driver: str = "570.86.15") -> None:
        host = {
            "driver_loaded": True,
            "driver": "570.86.15",
            "kernel_driver": kernel_driver,
            "cuda": cuda,
            "gpus": [],
        }
        Path(self.environ["LABTORCH_SIM_HOST_FILE"]).write_text(json.dumps(host))

    def meta(self, env: str, dist: str) -> dict[str, Any]:
        return json.loads((self.root / "envs" / env / "conda-meta" / f"{dist}.json").read_text())


def _condarc(url: str) -> str:
    return (
        "channels: [pytorch]\n"
        "custom_channels:\n"
        f"  pytorch: {url}/anaconda/cloud\n"
        f"  conda-forge: {url}/anaconda/cloud\n"
        # Not on the mirror, as nvidia is not on TUNA.
        f"  nvidia: {url}/anaconda/cloud\n"
        f"default_channels: [{url}/anaconda/pkgs/main]\n"
    )


def _make_host(directory: Path, runtime: Path, mirror: Mirror) -> Host:
    opt, home = directory / "opt", directory / "home"
    install_conda(opt, runtime_mount=str(runtime))
    home.mkdir()
    (home / ".condarc").write_text(_condarc(mirror.url))
    environ = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LABTORCH_SIM_HOST_FILE": str(directory / "host.json"),
    }
    return Host(opt, home, mirror, environ)


@pytest.fixture
def host(tmp_path: Path, runtime: Path, mirror: Mirror) -> Host:
    """A fresh host, for tests that change environments or configuration."""
    return _make_host(tmp_path, runtime, mirror)


@dataclass(frozen=True)
class GpuHost:
    """A host shared by read-only tests, with env ``gpu`` (the CUDA build) already created."""

    host: Host
    report: dict[str, Any]


@pytest.fixture(scope="module")
def gpu(tmp_path_factory: pytest.TempPathFactory, runtime: Path, mirror: Mirror) -> GpuHost:
    host = _make_host(tmp_path_factory.mktemp("gpu-host"), runtime, mirror)
    return GpuHost(host, host.json("create", "-n", "gpu", "-y", f"pytorch=2.3.1={CUDA_BUILD}"))


def _by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in entries}


# --- create / list / conda-meta -----------------------------------------------------------


def test_version(gpu: GpuHost) -> None:
    host = gpu.host
    result = host.conda("--version")
    assert (result.returncode, result.stdout.strip()) == (0, "conda 26.7.1")


def test_install_conda_layout(gpu: GpuHost) -> None:
    host = gpu.host
    for path in ("bin/conda", "condabin/conda", "etc/profile.d/conda.sh", "conda-meta/history"):
        assert (host.root / path).is_file(), path
    assert (host.root / "envs").is_dir() and (host.root / "pkgs").is_dir()
    assert not (host.root / ".condarc").exists()


def test_create_pins_build_string_and_reports_conda_shapes(gpu: GpuHost) -> None:
    host, report = gpu.host, gpu.report
    prefix = str(host.root / "envs" / "gpu")
    assert set(report) == {"success", "prefix", "actions"}
    assert (report["success"], report["prefix"]) == (True, prefix)
    assert set(report["actions"]) == {"FETCH", "LINK", "PREFIX"}
    assert all(set(item) == FETCH_FIELDS for item in report["actions"]["FETCH"])
    assert all(set(item) == LIST_FIELDS for item in report["actions"]["LINK"])
    linked = _by_name(report["actions"]["LINK"])
    assert set(linked) == {"python", "pip", "pytorch", "pytorch-mutex"}
    assert linked["pytorch"]["build_string"] == CUDA_BUILD
    assert linked["pytorch-mutex"]["build_string"] == "cuda"

    listed = _by_name(host.json("list", "-n", "gpu"))
    assert all(set(entry) == LIST_FIELDS for entry in listed.values())
    assert listed["pytorch"] == {
        "base_url": f"{host.mirror.url}/anaconda/cloud/pytorch",
        "build_number": 0,
        "build_string": CUDA_BUILD,
        "channel": "pytorch",
        "dist_name": f"pytorch-2.3.1-{CUDA_BUILD}",
        "name": "pytorch",
        "platform": "linux-64",
        "version": "2.3.1",
    }
    assert listed["pip"]["platform"] == "noarch"


def test_conda_meta_and_history_as_conda_writes_them(gpu: GpuHost) -> None:
    host = gpu.host
    channel = f"{host.mirror.url}/anaconda/cloud/pytorch/linux-64"
    record = host.meta("gpu", f"pytorch-2.3.1-{CUDA_BUILD}")
    assert record["channel"] == channel
    assert record["url"] == f"{channel}/pytorch-2.3.1-{CUDA_BUILD}.tar.bz2"
    assert record["requested_spec"] == f"pytorch=2.3.1={CUDA_BUILD}"
    assert host.meta("gpu", "pip-24.0-pyhd8ed1ab_0")["requested_spec"] == "None"
    history = (host.root / "envs" / "gpu" / "conda-meta" / "history").read_text()
    assert history.startswith("==> ")
    assert f"# cmd: {host.root}/bin/conda create -n gpu" in history
    assert f"+pytorch/linux-64::pytorch-2.3.1-{CUDA_BUILD}" in history
    assert not (host.root / "envs" / "gpu" / "CACHEDIR.TAG").exists()
    assert (host.root / "pkgs" / f"pytorch-2.3.1-{CUDA_BUILD}").is_dir()


@pytest.mark.parametrize("spec", ["pytorch=2.3.1=*cpu*", f"pytorch=2.3.1={CPU_BUILD}"])
def test_build_string_globs_and_exact_builds(host: Host, spec: str) -> None:
    report = host.json("create", "-p", str(host.opt / "cpu"), "-y", spec)
    linked = _by_name(report["actions"]["LINK"])
    assert (linked["pytorch"]["build_string"], linked["pytorch-mutex"]["build_string"]) == (
        CPU_BUILD,
        "cpu",
    )


# --- channels -----------------------------------------------------------------------------


def test_override_channels_uses_only_the_given_channels(host: Host) -> None:
    args = ("create", "-n", "x", "-y", "--override-channels", "-c", "conda-forge")
    error = host.json(*args, "pytorch==2.3.1", rc=1)
    assert set(error) == NOT_FOUND_KEYS
    assert error["exception_name"] == "PackagesNotFoundInChannelsError"
    assert error["packages"] == ["pytorch==2.3.1"]
    assert error["channel_urls"] == [f"{host.mirror.url}/anaconda/cloud/conda-forge"]
    assert not (host.root / "envs" / "x").exists()
    linked = host.json(*args, "six")["actions"]["LINK"]
    assert [(e["name"], e["channel"]) for e in linked] == [("six", "conda-forge")]


def test_defaults_expand_to_default_channels(host: Host) -> None:
    args = ("create", "-n", "z", "-y", "--override-channels", "-c", "defaults", "zlib")
    (entry,) = host.json(*args)["actions"]["LINK"]
    # conda names a default channel by its path under its host unless channel_alias covers it.
    assert entry["base_url"] == f"{host.mirror.url}/anaconda/pkgs/main"
    assert entry["channel"] == "anaconda/pkgs/main"


def test_channel_missing_from_mirror(gpu: GpuHost) -> None:
    args = ("create", "-n", "x", "-y", "--override-channels", "-c", "nvidia", "cuda")
    error = gpu.host.json(*args, rc=1)
    assert error["exception_name"] == "UnavailableInvalidChannel"
    assert error["channel_url"] == f"{gpu.host.mirror.url}/anaconda/cloud/nvidia"


def test_conflicting_specs_are_unsatisfiable(gpu: GpuHost) -> None:
    specs = ("pytorch=2.3.1=*cpu*", "pytorch-mutex=1.0=cuda")
    error = gpu.host.json("create", "-n", "x", "-y", *specs, rc=1)
    assert error["exception_name"] == "UnsatisfiableError"


def test_override_channels_needs_a_channel(host: Host) -> None:
    error = host.json("create", "-n", "x", "-y", "--override-channels", "six", rc=1)
    assert error["exception_name"] == "ArgumentError"


# --- virtual packages ---------------------------------------------------------------------


def _cuda_check(host: Host, rc: int, **env: str) -> Any:
    args = ("create", "-n", "cc", "-y", "-c", "conda-forge", "--override-channels")
    return host.json(*args, "cuda-driver-check", rc=rc, **env)


def test_cuda_absent_without_driver(host: Host) -> None:
    """The classic solver, as observed in conda-cli.md §4: a missing ``__cuda`` is a package
    "not available from current channels"."""
    error = _cuda_check(host, rc=1, CONDA_SOLVER="classic")
    assert error["exception_name"] == "PackagesNotFoundInChannelsError"
    assert error["packages"] == ["__cuda[version='>=12.1']"]
    assert "__cuda" not in [name for name, *_ in host.json("info")["virtual_pkgs"]]


def test_cuda_absent_without_driver_with_libmamba(host: Host) -> None:
    """libmamba (Miniconda's default solver) says that nothing provides the dependency, and
    which package needs it (conda-libmamba-solver ``solver.py`` ``_parse_problems``)."""
    error = _cuda_check(host, rc=1)
    assert error["exception_name"] == "LibMambaUnsatisfiableError"
    assert "nothing provides __cuda >=12.1 needed by cuda-driver-check-1.0-0" in error["message"]


def test_cuda_from_host_file(host: Host) -> None:
    host.write_host_file(cuda="12.8")
    assert ["__cuda", "12.8", "0"] in host.json("info")["virtual_pkgs"]
    assert _cuda_check(host, rc=0)["success"] is True


def test_cuda_absent_when_driver_and_kernel_module_differ(host: Host) -> None:
    host.write_host_file(cuda="12.8", kernel_driver="550.54.14")
    _cuda_check(host, rc=1)


@pytest.mark.parametrize(("override", "rc"), [("12.1", 0), ("11.8", 1), ("", 1)])
def test_cuda_override(host: Host, override: str, rc: int) -> None:
    host.write_host_file(cuda="12.8")
    result = _cuda_check(host, rc=rc, CONDA_OVERRIDE_CUDA=override, CONDA_SOLVER="classic")
    if rc:
        assert result["exception_name"] == "PackagesNotFoundInChannelsError"


# --- explicit files -----------------------------------------------------------------------


@pytest.mark.parametrize("hash_flag", ["--md5", "--sha256"])
def test_explicit_file_round_trip(gpu: GpuHost, hash_flag: str) -> None:
    host, copy = gpu.host, f"copy{hash_flag}"
    listing = host.conda("list", "-n", "gpu", "--explicit", hash_flag)
    assert listing.returncode == 0 and "@EXPLICIT" in listing.stdout
    explicit = host.opt / f"{copy}.txt"
    explicit.write_text(
        listing.stdout.replace("#", "#sha256:") if hash_flag == "--sha256" else listing.stdout
    )
    before = len(host.mirror.requested_paths())
    host.json("create", "-n", copy, "-y", "--file", str(explicit))
    fetched = host.mirror.requested_paths()[before:]
    assert not any(path.endswith("repodata.json") for path in fetched)
    assert host.json("list", "-n", copy) == host.json("list", "-n", "gpu")
    record = host.meta(copy, f"pytorch-2.3.1-{CUDA_BUILD}")
    assert record["url"].startswith(f"{host.mirror.url}/anaconda/cloud/pytorch/linux-64/")


def test_explicit_file_with_wrong_md5_creates_nothing(gpu: GpuHost) -> None:
    host = gpu.host
    listing = host.conda("list", "-n", "gpu", "--explicit", "--md5").stdout
    url, digest = listing.splitlines()[-1].split("#")
    explicit = host.opt / "bad.txt"
    explicit.write_text(listing.replace(digest, "0" * 32))
    error = host.json("create", "-n", "bad", "-y", "--file", str(explicit), rc=1)
    assert error["exception_name"] == "CondaMultiError"
    (inner,) = error["errors"]
    assert (inner["exception_name"], inner["url"], inner["actual_checksum"]) == (
        "ChecksumMismatchError",
        url,
        digest,
    )
    assert not (host.root / "envs" / "bad").exists()


# --- install / remove ---------------------------------------------------------------------


def test_install_keeps_what_is_there_and_leaves_other_envs_alone(host: Host) -> None:
    host.json("create", "-n", "gpu", "-y", f"pytorch=2.3.1={CUDA_BUILD}")
    host.json("create", "-n", "other", "-y", "-c", "conda-forge", "six")
    other_meta = host.root / "envs" / "other" / "conda-meta"
    other_before = {p.name: p.stat().st_mtime_ns for p in other_meta.iterdir()}
    before = host.json("list", "-n", "gpu")

    report = host.json("install", "-n", "gpu", "-y", "-c", "conda-forge", "six")
    assert "UNLINK" not in report["actions"]
    assert [e["name"] for e in report["actions"]["LINK"]] == ["six"]
    after = host.json("list", "-n", "gpu")
    assert [e for e in after if e["name"] != "six"] == before
    assert {p.name: p.stat().st_mtime_ns for p in other_meta.iterdir()} == other_before

    again = host.json("install", "-n", "gpu", "-y", "-c", "conda-forge", "six")
    assert again == {"message": "All requested packages already installed.", "success": True}


def test_create_never_replaces_base(gpu: GpuHost) -> None:
    error = gpu.host.json("create", "-n", "base", "-y", "six", rc=1)
    assert error["exception_name"] == "CondaValueError"
    assert (gpu.host.root / "bin" / "conda").is_file()


def test_install_into_missing_env_fails(host: Host) -> None:
    error = host.json("install", "-n", "nope", "-y", "six", rc=1)
    assert error["exception_name"] == "EnvironmentLocationNotFound"


def test_remove_packages_then_environment(host: Host) -> None:
    host.json("create", "-n", "gpu", "-y", f"pytorch=2.3.1={CUDA_BUILD}")
    report = host.json("remove", "-n", "gpu", "--offline", "-y", "pytorch-mutex")
    assert sorted(e["name"] for e in report["actions"]["UNLINK"]) == ["pytorch", "pytorch-mutex"]
    assert sorted(e["name"] for e in host.json("list", "-n", "gpu")) == ["pip", "python"]
    assert (
        "# remove specs: ['pytorch-mutex']"
        in (host.root / "envs" / "gpu" / "conda-meta" / "history").read_text()
    )

    assert host.json("remove", "-n", "gpu", "--all", "-y")["success"] is True
    assert not (host.root / "envs" / "gpu").exists()
    error = host.json("list", "-n", "gpu", rc=1)
    assert error["exception_name"] == "EnvironmentLocationNotFound"


# --- info / env list / config -------------------------------------------------------------


def test_info_json(gpu: GpuHost) -> None:
    host = gpu.host
    info = host.json("info")
    assert set(info) == INFO_KEYS
    pytorch = f"{host.mirror.url}/anaconda/cloud/pytorch"
    assert info["channels"] == [f"{pytorch}/linux-64", f"{pytorch}/noarch"]
    assert info["root_prefix"] == str(host.root)
    assert info["conda_version"] == "26.7.1"
    assert info["config_files"] == [str(host.home / ".condarc")]
    assert info["user_rc_path"] == str(host.home / ".condarc")
    assert info["sys_rc_path"] == str(host.root / ".condarc")
    assert info["envs_dirs"][0] == str(host.root / "envs")
    assert info["pkgs_dirs"][0] == str(host.root / "pkgs")
    assert set(info["solver"]) == {"name", "user_agent", "default"}
    assert all(len(triple) == 3 for triple in info["virtual_pkgs"])
    assert {"__glibc", "__linux", "__unix", "__archspec"} <= {n for n, *_ in info["virtual_pkgs"]}


def test_env_list_json(host: Host) -> None:
    host.json("create", "-n", "empty", "-y")
    listing = host.json("env", "list")
    prefixes = [str(host.root), str(host.root / "envs" / "empty")]
    assert set(listing) == {"envs", "envs_details"}
    assert listing["envs"] == prefixes
    assert all(set(d) == ENV_DETAIL_KEYS for d in listing["envs_details"].values())
    assert listing["envs_details"][prefixes[1]]["name"] == "empty"


def test_config_show_parses_channels(gpu: GpuHost) -> None:
    host = gpu.host
    keys = ("channels", "default_channels", "custom_channels", "channel_alias")
    shown = host.json("config", "--show", *keys)
    assert sorted(shown) == sorted(keys)
    assert shown["channels"] == ["pytorch"]
    assert shown["custom_channels"]["pytorch"] == {
        "auth": None,
        "location": f"{host.mirror.url.removeprefix('http://')}/anaconda/cloud",
        "name": "pytorch",
        "package_filename": None,
        "platform": None,
        "scheme": "http",
        "token": None,
    }
    assert set(shown["channel_alias"]) == CHANNEL_DUMP_KEYS
    assert shown["channel_alias"]["location"] == "conda.anaconda.org"
    assert [c["name"] for c in shown["default_channels"]] == ["anaconda/pkgs/main"]
    full = host.json("config", "--show")
    assert full["add_pip_as_python_dependency"] is True and full["solver"] == "libmamba"


def test_config_show_sources(gpu: GpuHost) -> None:
    host = gpu.host
    sources = host.json("config", "--show-sources", CONDA_PKGS_DIRS=str(host.opt / "cache"))
    assert sources[str(host.home / ".condarc")]["channels"] == ["pytorch"]
    assert sources["envvars"] == {"pkgs_dirs": [str(host.opt / "cache")]}


def test_malformed_condarc_is_a_conda_error(host: Host) -> None:
    (host.home / ".condarc").write_text("channels: [pytorch\n")
    error = host.json("info", rc=1)
    assert error["exception_name"] == "ConfigurationLoadError"
    assert str(host.home / ".condarc") in error["message"]


def test_condarc_search_path_and_final(host: Host) -> None:
    (host.root / "condarc.d").mkdir()
    (host.root / "condarc.d" / "10-site.yaml").write_text(
        "channels: [conda-forge]  #!final\nsolver: classic\n"
    )
    (host.root / "condarc.d" / "ignored.txt").write_text("channels: [nope]\n")
    info = host.json("info")
    assert info["config_files"] == [
        str(host.root / "condarc.d" / "10-site.yaml"),
        str(host.home / ".condarc"),
    ]
    assert info["channels"][0].endswith("/anaconda/cloud/conda-forge/linux-64")
    assert len(info["channels"]) == 2
    assert info["solver"]["name"] == "classic"


# --- the mirror sees only repodata.json and packages ---------------------------------------


def test_mirror_sees_only_repodata_and_packages(gpu: GpuHost) -> None:
    paths = gpu.host.mirror.requested_paths()
    assert paths
    allowed = ("/repodata.json", ".tar.bz2", ".conda")
    assert [p for p in paths if not p.endswith(allowed)] == []
    assert "/anaconda/cloud/pytorch/linux-64/repodata.json" in paths


# --- in-process units: merging and channel naming -----------------------------------------


def test_merge_lists_later_first_maps_keywise_scalars_last() -> None:
    sources = [
        condarc.Source("a", {"channels": ["x", "y"], "custom_channels": {"a": "1"}, "solver": "s"}),
        condarc.Source("b", {"channels": ["z", "x"], "custom_channels": {"b": "2"}, "solver": "t"}),
    ]
    assert condarc.merge(sources) == {
        "channels": ["z", "x", "y"],
        "custom_channels": {"a": "1", "b": "2"},
        "solver": "t",
    }


def test_merge_final_stops_later_sources() -> None:
    sources = [
        condarc.Source("a", {"channels": ["x"]}, frozenset({"channels"})),
        condarc.Source("b", {"channels": ["y"], "solver": "classic"}),
    ]
    assert condarc.merge(sources) == {"channels": ["x"], "solver": "classic"}


@pytest.mark.parametrize(
    ("url", "name", "canonical"),
    [
        ("https://m.example/anaconda/cloud/pytorch", "pytorch", "pytorch"),
        ("https://m.example/anaconda/pkgs/main", "pkgs/main", "defaults"),
        ("https://conda.anaconda.org/nvidia", "nvidia", "nvidia"),
        ("http://other.example/some/chan", "some/chan", "http://other.example/some/chan"),
    ],
)
def test_channel_names_from_urls(url: str, name: str, canonical: str) -> None:
    config = ChannelConfig.from_settings(
        {
            "custom_channels": {"pytorch": "https://m.example/anaconda/cloud"},
            "channel_alias": "https://conda.anaconda.org",
            "default_channels": ["https://m.example/anaconda/pkgs/main"],
        }
    )
    # A default channel outside channel_alias is named by its path, so give it an alias here.
    if "pkgs/main" in url:
        config = ChannelConfig.from_settings(
            {"channel_alias": "https://m.example/anaconda", "default_channels": [url]}
        )
    channel = config.from_url(url)
    assert (channel.base_url, channel.name, config.canonical_name(channel)) == (
        url,
        name,
        canonical,
    )


def test_build_runtime_is_idempotent(runtime: Path) -> None:
    site = runtime / "site"
    # Brings the runtime up to date with labtorch sources edited since the session started.
    build_runtime(runtime)
    inode = site.stat().st_ino
    started = time.monotonic()
    build_runtime(runtime)
    assert site.stat().st_ino == inode
    assert time.monotonic() - started < 2
    assert (site / "rattler").is_dir() and (site / "yaml").is_dir()
    assert (site / "labtorch_sim" / "conda" / "__main__.py").is_file()


# --- where the stand-in copies real conda's behaviour (issue 10, item 4) -------------------
# These run against the lab's own mirror server (labtorch_sim.mirror) on the same channels, so
# that a download can be made to fail: a 403 as TUNA answers a blocked address range.


@dataclass(frozen=True)
class FaultyMirror:
    url: str
    state: Path

    def fault(self, prefix: str, kind: str | None) -> None:
        set_fault(self.state, prefix, kind)

    def paths_since(self, start: int) -> list[tuple[str, int]]:
        return [(e["path"], e["status"]) for e in read_log(self.state)[start:]]

    def mark(self) -> int:
        return len(read_log(self.state))


@pytest.fixture(scope="module")
def faulty(channel_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyMirror]:
    state = tmp_path_factory.mktemp("faulty-mirror")
    process = start_mirror(channel_root, state)
    try:
        yield FaultyMirror(process.url, state)
    finally:
        stop_mirror(state)


@pytest.fixture
def faulty_host(tmp_path: Path, runtime: Path, faulty: FaultyMirror) -> Iterator[Host]:
    """A fresh host whose condarc points at the mirror that faults; faults are cleared after."""
    yield _make_host(tmp_path, runtime, Mirror(faulty.url, faulty.state / "requests.jsonl"))
    faults = faulty.state / "faults.json"
    for prefix in json.loads(faults.read_text()) if faults.exists() else {}:
        faulty.fault(prefix, None)


def _tree(prefix: Path) -> dict[str, bytes]:
    """Every file of an environment with its content (symlinks as their target)."""
    return {
        str(path.relative_to(prefix)): (
            os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        )
        for path in sorted(prefix.rglob("*"))
        if path.is_file() or path.is_symlink()
    }


CUDA_PACKAGE = f"/anaconda/cloud/pytorch/linux-64/pytorch-2.3.1-{CUDA_BUILD}.tar.bz2"


def test_a_failed_create_leaves_no_prefix(faulty_host: Host, faulty: FaultyMirror) -> None:
    """Real conda downloads and extracts every package before it creates the prefix, and a
    failed download raises ``CondaMultiError`` of ``CondaHTTPError``; no environment is left
    (conda ``core/package_cache_data.py`` ``ProgressiveFetchExtract.execute`` runs before
    ``core/link.py`` ``UnlinkLinkTransaction``; conda-cli.md §5: "no env is created"). So a
    host's rerun runs ``create`` again, not ``install`` into half an env."""
    host = faulty_host
    faulty.fault(CUDA_PACKAGE, "403")
    error = host.json("create", "-n", "half", "-y", f"pytorch=2.3.1={CUDA_BUILD}", rc=1)
    assert error["exception_name"] == "CondaMultiError"
    (inner,) = error["errors"]
    assert inner["exception_name"] == "CondaHTTPError"
    assert inner["url"] == f"{faulty.url}{CUDA_PACKAGE}"
    assert not (host.root / "envs" / "half").exists()
    assert str(host.root / "envs" / "half") not in host.json("env", "list")["envs"]
    registry = host.home / ".conda" / "environments.txt"
    assert not registry.exists() or "half" not in registry.read_text()
    faulty.fault(CUDA_PACKAGE, None)
    report = host.json("create", "-n", "half", "-y", f"pytorch=2.3.1={CUDA_BUILD}")
    assert report["success"] is True


def test_a_failed_install_leaves_the_env_as_it_was(faulty_host: Host, faulty: FaultyMirror) -> None:
    """Real conda fetches every package before it unlinks or links anything, and rolls a failed
    link back (conda ``core/link.py`` ``UnlinkLinkTransaction.execute``/``_reverse``): a failed
    ``install`` leaves the environment's files, ``conda-meta`` and history as they were. labtorch
    relies on it when the install from the first mirror fails and a fallback gets its turn."""
    host = faulty_host
    host.json("create", "-n", "env", "-y", f"pytorch=2.3.1={CPU_BUILD}")
    prefix = host.root / "envs" / "env"
    before, listed = _tree(prefix), host.json("list", "-n", "env")
    faulty.fault(CUDA_PACKAGE, "403")
    error = host.json("install", "-n", "env", "-y", f"pytorch=2.3.1={CUDA_BUILD}", rc=1)
    assert error["exception_name"] == "CondaMultiError"
    assert host.json("list", "-n", "env") == listed
    assert _tree(prefix) == before
    assert not list((host.root / "pkgs").glob(".labtorch-rollback-*"))


def test_remove_goes_online_unless_offline(faulty_host: Host, faulty: FaultyMirror) -> None:
    """Real conda solves a removal with the channels of ``-c`` and the condarc
    (conda 26.7.1 ``cli/main_remove.py`` ``execute``: ``solver_backend(prefix, (), (),
    specs_to_remove=...)``; ``core/solve.py`` takes ``context.channels``), and the solve fetches
    their repodata: a blocked channel fails the removal before anything is unlinked. With
    ``--offline`` (or ``offline: true``) it makes no request; ``--all`` never solves."""
    host = faulty_host
    host.json("create", "-n", "env", "-y", f"pytorch=2.3.1={CPU_BUILD}")
    listed = host.json("list", "-n", "env")
    faulty.fault("/anaconda/cloud/pytorch/", "403")
    start = faulty.mark()
    error = host.json("remove", "-n", "env", "-y", "pytorch", rc=1)
    assert error["exception_name"] == "CondaHTTPError"
    assert error["url"] == f"{faulty.url}/anaconda/cloud/pytorch"
    requests = faulty.paths_since(start)
    assert ("/anaconda/cloud/pytorch/linux-64/repodata.json", 403) in requests
    assert host.json("list", "-n", "env") == listed

    start = faulty.mark()
    report = host.json("remove", "-n", "env", "-y", "--offline", "pytorch")
    assert [e["name"] for e in report["actions"]["UNLINK"]] == ["pytorch"]
    host.json("remove", "-n", "env", "-y", "pytorch-mutex", CONDA_OFFLINE="true")
    assert faulty.paths_since(start) == []
    assert host.json("remove", "-n", "env", "--all", "-y")["success"] is True
    assert faulty.paths_since(start) == []


def test_remove_of_a_channel_the_mirror_lacks_fails_as_conda_does(
    faulty_host: Host, faulty: FaultyMirror
) -> None:
    """The removal's solve reads every channel; a channel the mirror does not carry is conda's
    ``UnavailableInvalidChannel`` (HTTP 404), as for an install."""
    host = faulty_host
    host.json("create", "-n", "env", "-y", f"pytorch=2.3.1={CPU_BUILD}")
    error = host.json("remove", "-n", "env", "-y", "-c", "nvidia", "pytorch", rc=1)
    assert error["exception_name"] == "UnavailableInvalidChannel"
    assert error["channel_url"] == f"{faulty.url}/anaconda/cloud/nvidia"


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("condarc", True),
        (".condarc", True),
        ("site.yml", True),
        ("site.yaml", True),
        ("mirror.conf", False),
        ("condarc.txt", False),
        ("site.yaml.bak", False),
    ],
)
def test_condarc_is_read_only_under_the_names_conda_reads(
    host: Host, tmp_path: Path, name: str, read: bool
) -> None:
    """Real conda reads a search-path file, ``$CONDARC`` included, only when it is named
    ``condarc`` or ``.condarc`` or ends in ``.yml``/``.yaml``, and silently ignores any other
    (conda 26.7.1 ``common/configuration.py`` ``_expand_search_path``: ``path.name in
    CONDARC_FILENAMES or path.suffix in YAML_EXTENSIONS``)."""
    condarc = tmp_path / "etc" / name
    condarc.parent.mkdir()
    condarc.write_text("channels: [conda-forge]\n")
    info = host.json("info", CONDARC=str(condarc))
    assert (str(condarc) in info["config_files"]) is read
    first = info["channels"][0]
    assert first.endswith("/conda-forge/linux-64" if read else "/pytorch/linux-64")


def test_condarc_naming_a_directory_reads_its_yaml_files(host: Host, tmp_path: Path) -> None:
    """``$CONDARC`` may name a directory: conda reads its ``*.yml``/``*.yaml`` files, sorted by
    name, and nothing else in it (``_expand_search_path``)."""
    directory = tmp_path / "condarc-dir"
    directory.mkdir()
    (directory / "b.yaml").write_text("solver: classic\n")
    (directory / "a.yml").write_text("channels: [conda-forge]\n")
    (directory / "c.conf").write_text("channels: [nope]\n")
    info = host.json("info", CONDARC=str(directory))
    assert info["config_files"][-2:] == [str(directory / "a.yml"), str(directory / "b.yaml")]
    assert info["solver"]["name"] == "classic"
    assert all("nope" not in url for url in info["channels"])


def test_conda_format_packages_install_and_round_trip(host: Host) -> None:
    """Channels hold ``.conda`` packages (format v2) next to ``.tar.bz2`` ones, listed under
    ``packages.conda`` in repodata; conda records their ``.conda`` URL in ``conda-meta`` and in
    ``conda list --explicit``, and installs them again from that file (conda-cli.md §2: the
    torchvision real conda picked was a ``.conda`` file; mirrors.md §2.4: TUNA serves both)."""
    host.json("create", "-n", "six", "-y", "-c", "conda-forge", "six")
    record = host.meta("six", "six-1.16.0-pyhd8ed1ab_0")
    noarch = f"{host.mirror.url}/anaconda/cloud/conda-forge/noarch"
    assert record["url"] == f"{noarch}/six-1.16.0-pyhd8ed1ab_0.conda"
    assert (host.root / "envs/six/share/six/pyhd8ed1ab_0").read_bytes() == b"stub\n"
    listing = host.conda("list", "-n", "six", "--explicit", "--md5").stdout
    assert listing.splitlines()[-1].startswith(record["url"] + "#")
    explicit = host.opt / "six.txt"
    explicit.write_text(listing)
    host.json("create", "-n", "six-again", "-y", "--file", str(explicit))
    assert host.json("list", "-n", "six-again") == host.json("list", "-n", "six")


# --- the article's route on the lab's mirror (issue 10 item 3) -----------------------------
# The stand-in against the lab mirror's own content (conftest's ``root``), with the condarc of
# TUNA's help page plus the nvidia channel where a site mirror has it.


@pytest.fixture(scope="module")
def lab_mirror(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("lab-mirror")
    try:
        yield start_mirror(root, state).url
    finally:
        stop_mirror(state)


@pytest.fixture
def tuna_host(tmp_path: Path, runtime: Path, lab_mirror: str) -> Host:
    host = _make_host(tmp_path, runtime, Mirror(lab_mirror, tmp_path / "unused.log"))
    (host.home / ".condarc").write_text(
        "channels: [defaults]\n"
        f"default_channels: [{lab_mirror}/anaconda/pkgs/main]\n"
        "custom_channels:\n"
        f"  pytorch: {lab_mirror}/anaconda/cloud\n"
        f"  nvidia: {lab_mirror}/anaconda/cloud\n"
    )
    return host


ARTICLE = ("pytorch==2.3.1", "torchvision==0.18.1", "torchaudio==2.3.1")


@pytest.mark.parametrize(
    ("cuda", "build", "cudart"),
    [
        ("12.1", "py3.11_cuda12.1_cudnn8.9.2_0", "12.1.105"),
        ("11.8", "py3.11_cuda11.8_cudnn8.7.0_0", "11.8.89"),
    ],
)
def test_the_articles_command_takes_pytorch_cuda_from_the_nvidia_channel(
    tuna_host: Host, lab_mirror: str, cuda: str, build: str, cudart: str
) -> None:
    """``conda install pytorch==2.3.1 torchvision==0.18.1 torchaudio==2.3.1 pytorch-cuda=12.1
    -c pytorch -c nvidia`` (pytorch.org's previous-versions page, torch-matrix.md §3.1): the
    CUDA build with its real build string, and pytorch-cuda's CUDA libraries from nvidia."""
    host = tuna_host
    args = ("create", "-n", "t", "-y", *ARTICLE, f"pytorch-cuda={cuda}", "-c", "pytorch")
    linked = _by_name(host.json(*args, "-c", "nvidia")["actions"]["LINK"])
    assert linked["pytorch"]["build_string"] == build
    assert (linked["pytorch-cuda"]["channel"], linked["pytorch-cuda"]["version"]) == (
        "pytorch",
        cuda,
    )
    for name, version in (("cuda-cudart", cudart), ("cuda-runtime", f"{cuda}.0")):
        assert (linked[name]["channel"], linked[name]["version"]) == ("nvidia", version)
    nvidia = {name for name, entry in linked.items() if entry["channel"] == "nvidia"}
    assert {"cuda-libraries", "libcublas", "libcufft", "libcusparse", "libnpp"} <= nvidia
    record = host.meta("t", f"cuda-cudart-{cudart}-0")
    assert record["url"].startswith(f"{lab_mirror}/anaconda/cloud/nvidia/linux-64/")


def test_the_cpu_build_with_cpuonly_needs_no_nvidia_channel(tuna_host: Host) -> None:
    args = ("create", "-n", "t", "-y", *ARTICLE, "cpuonly", "-c", "pytorch")
    linked = _by_name(tuna_host.json(*args)["actions"]["LINK"])
    assert linked["pytorch"]["build_string"] == "py3.11_cpu_0"
    assert linked["pytorch-mutex"]["build_string"] == "cpu"
    assert not [name for name in linked if name.startswith(("cuda-", "libcu"))]


def test_without_the_nvidia_channel_nothing_provides_cuda_cudart(tuna_host: Host) -> None:
    """The article's error: the pytorch channel's CUDA builds need the nvidia channel, and
    conda with libmamba (Miniconda's default) says "nothing provides cuda-cudart >=12.1,<12.2
    needed by pytorch-cuda-12.1-ha16c6d3_5"; the classic solver lists cuda-cudart among the
    packages "not available from current channels". Nothing is created either way."""
    host = tuna_host
    args = ("create", "-n", "t", "-y", *ARTICLE, "pytorch-cuda=12.1", "-c", "pytorch")
    error = host.json(*args, rc=1)
    assert error["exception_name"] == "LibMambaUnsatisfiableError"
    assert (
        "nothing provides cuda-cudart >=12.1,<12.2 needed by pytorch-cuda-12.1-ha16c6d3_5"
        in error["message"]
    )
    classic = host.json(*args, rc=1, CONDA_SOLVER="classic")
    assert classic["exception_name"] == "PackagesNotFoundInChannelsError"
    assert "cuda-cudart[version='>=12.1,<12.2']" in classic["packages"]
    assert not (host.root / "envs" / "t").exists()
