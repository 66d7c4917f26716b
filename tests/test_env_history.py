"""An env's history and its rollback: the pure decisions (which state, is the env already it,
the probe's verdict), the host program run for real against the conda stand-in (record, put
back by revision or by explicit list, keep the newest N), and the stand-in's ``conda list
--revisions`` and ``conda install --revision`` as conda 26.7.1 words them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labtorch.facts import history_script
from labtorch.facts.env_history import (
    HISTORY_MARK,
    parse_rollback_state,
    record_command,
    restore_command,
    rollback_result,
)
from labtorch.rules.history import (
    PREVIOUS,
    choose,
    describe,
    holds,
    listing_fingerprint,
    parse_target,
    rollback_verdict,
)
from labtorch_sim.condapkg import CondaPackage, index_channel, write_package
from labtorch_sim.mirror import start_mirror, stop_mirror
from labtorch_sim.runtime import build_runtime, install_conda

SCRIPT = Path(history_script.__file__)


def _state(number: int, packages: list[dict], kind: str = "conda", **more) -> dict:
    return {"id": number, "kind": kind, "packages": packages, "torch": "2.3.1", **more}


CONDA_PACKAGES = [
    {"name": "pytorch", "version": "2.3.1", "build": "cpu_0", "url": "u", "md5": None},
    {"name": "python", "version": "3.11.2", "build": "h_0", "url": "u", "md5": None},
]


# ---- the pure decisions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "target"),
    [("previous", PREVIOUS), ("3", 3), (" 12 ", 12), (4, 4)],
)
def test_the_target_is_previous_or_a_number(value, target) -> None:
    assert parse_target(value) == target


@pytest.mark.parametrize("value", ["0", "-1", "last", "", True, 0])
def test_anything_else_is_refused(value) -> None:
    with pytest.raises(ValueError, match="--to takes 'previous' or a state's number"):
        parse_target(value)


def test_choose_the_newest_or_the_numbered_state() -> None:
    states = [_state(2, []), _state(3, []), _state(5, [])]
    assert choose(states, PREVIOUS, "/e")["id"] == 5
    assert choose(states, 3, "/e")["id"] == 3
    assert choose(states, 4, "/e") == "no state 4 of /e is kept (kept: 2, 3, 5)"
    assert choose([], PREVIOUS, "/e").startswith("no recorded state of /e: a deploy records")


def test_the_env_already_is_the_state_when_its_listing_matches() -> None:
    conda = ("pytorch-2.3.1-cpu_0.json", "python-3.11.2-h_0.json", "torch-2.3.1.dist-info")
    assert holds(_state(1, CONDA_PACKAGES), conda)
    assert not holds(_state(1, CONDA_PACKAGES), conda[:1])
    pip = [
        {"name": "torch", "version": "2.9.1+cu126", "url": "u", "sha256": "s"},
        {"name": "nvidia-cuda-runtime-cu12", "version": "12.6.77", "url": None, "sha256": None},
    ]
    listing = ("nvidia_cuda_runtime_cu12-12.6.77.dist-info", "torch-2.9.1+cu126.dist-info")
    assert listing_fingerprint("pip", listing) == [
        "nvidia-cuda-runtime-cu12==12.6.77",
        "torch==2.9.1+cu126",
    ]
    assert holds(_state(1, pip, "pip"), listing)
    assert not holds(_state(1, pip, "pip"), ("torch-2.9.1+cpu.dist-info", listing[0]))


def test_a_state_in_one_line() -> None:
    state = _state(4, [], time="2026-11-29T10:00:00Z", run="r1", reason="why", conda_revision=2)
    assert describe(state) == (
        "state 4 (torch 2.3.1, conda revision 2; recorded 2026-11-29T10:00:00Z by run r1: why)"
    )


def _probe(version: str, cuda: str | None, devices: int) -> dict:
    return {
        "packages": {name: {"version": version, "error": None} for name in ("torch",)},
        "origins": {},
        "gpu": {
            "cuda": cuda,
            "available": bool(devices),
            "arch_list": ["sm_90"],
            "devices": [
                {"index": i, "name": "H100", "capability": "9.0", "matmul": "ok"}
                for i in range(devices)
            ],
            "warnings": [],
        },
        "cpu_matmul": "ok",
    }


def test_the_rolled_back_env_must_be_the_recorded_torch_and_work() -> None:
    assert rollback_verdict(_probe("2.3.1", "12.1", 2), "2.3.1", 2).passed
    assert rollback_verdict(_probe("2.9.1+cu126", "12.6", 2), "2.9.1+cu126", 2).passed
    wrong = rollback_verdict(_probe("2.9.1+cpu", None, 0), "2.9.1+cu126", 2)
    assert not wrong.passed
    assert wrong.failures[0] == "torch is 2.9.1+cpu, not the recorded 2.9.1+cu126"
    assert not rollback_verdict(None, "2.3.1", 0).passed


# ---- what the facts send and read back --------------------------------------------------------


def test_the_program_runs_with_the_first_python_the_host_has() -> None:
    command = record_command(
        "/opt/conda/envs/t", "conda", 5, "run-1", "why", "/opt/conda/bin/conda"
    )
    first = command.splitlines()[0]
    assert first.index("/opt/conda/bin/python") < first.index("python3")
    assert first.index("python3") < first.index("/opt/conda/envs/t/bin/python")
    assert "- record /opt/conda/envs/t conda 5 run-1 why /opt/conda/bin/conda <<'" in command
    assert history_script.MARK in restore_command("/v", "pip", 5, "r", 3, None)
    assert " - restore /v pip 5 r 3 <<'" in restore_command("/v", "pip", 5, "r", 3, None)


def test_the_rollback_state_is_the_host_state_then_the_kept_states() -> None:
    lines = [
        "@@labtorch system", "Linux", "@@labtorch env-path", "/opt/conda/envs/torch",
        HISTORY_MARK, json.dumps(_state(2, [])), "not json", json.dumps(_state(1, [])), "",
    ]  # fmt: skip
    state, states = parse_rollback_state(lines)
    assert state.env_path == "/opt/conda/envs/torch"
    assert [s["id"] for s in states] == [1, 2]
    printed = ["x", history_script.MARK + '{"target": 1, "how": "h"}']
    assert rollback_result(printed) == {"target": 1, "how": "h"}
    assert rollback_result(["labtorch: failed"]) is None


# ---- the host program, run for real against the conda stand-in -------------------------------


def _package(name: str, version: str, build: str = "0") -> CondaPackage:
    return CondaPackage(name, version, build, files={f"share/{name}/{version}": b"stub\n"})


CHANNEL = [
    _package("pytorch", "2.3.1", "cpu_0"),
    _package("pytorch", "2.7.1", "cpu_0"),
    _package("zlib", "1.3", "h_0"),
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("history-mirror")
    channel = root / "anaconda" / "cloud" / "conda-forge"
    for package in CHANNEL:
        write_package(package, channel)
    index_channel(channel)
    (root / "anaconda" / "cloud" / "empty").mkdir()
    index_channel(root / "anaconda" / "cloud" / "empty")
    state = tmp_path_factory.mktemp("history-mirror-state")
    process = start_mirror(root, state)
    yield process.url
    stop_mirror(state)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("runtime")
    build_runtime(directory)
    return directory


class Host:
    """A conda root and a $HOME in a temporary directory, conda run as a lab host runs it."""

    def __init__(self, directory: Path, runtime: Path, url: str) -> None:
        self.url = url
        self.opt, self.home = directory / "opt", directory / "home"
        install_conda(self.opt, runtime_mount=str(runtime))
        self.home.mkdir()
        (self.home / ".condarc").write_text(
            f"channels: [conda-forge]\ncustom_channels:\n  conda-forge: {url}/anaconda/cloud\n"
        )
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(self.home)}
        self.conda = str(self.opt / "conda" / "bin" / "conda")
        self.prefix = str(self.opt / "conda" / "envs" / "torch")

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def conda_json(self, *argv: str, rc: int = 0):
        done = self.run(self.conda, *argv, "--json")
        assert done.returncode == rc, done.stdout + done.stderr
        return json.loads(done.stdout)

    def history(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, str(SCRIPT), *argv)

    def pytorch(self) -> str:
        listing = self.conda_json("list", "-p", self.prefix)
        return next(f"{p['version']}" for p in listing if p["name"] == "pytorch")

    def names(self) -> list[str]:
        return sorted(p["name"] for p in self.conda_json("list", "-p", self.prefix))


@pytest.fixture
def host(tmp_path: Path, runtime: Path, served: str) -> Host:
    host = Host(tmp_path, runtime, served)
    host.conda_json("create", "-p", host.prefix, "-y", "pytorch=2.3.1")
    return host


def _record(host: Host, keep: int = 5, reason: str = "why") -> None:
    done = host.history("record", host.prefix, "conda", str(keep), "run-1", reason, host.conda)
    assert done.returncode == 0, done.stderr


def _restore(host: Host, target: int) -> subprocess.CompletedProcess[str]:
    return host.history("restore", host.prefix, "conda", "5", "run-2", str(target), host.conda)


def test_record_then_put_back_by_revision(host: Host) -> None:
    _record(host)
    host.conda_json("install", "-p", host.prefix, "-y", "pytorch=2.7.1", "zlib")
    assert host.pytorch() == "2.7.1"
    states = history_script.load_states(host.prefix)
    assert [(s["id"], s["torch"], s["conda_revision"]) for s in states] == [(1, "2.3.1", 0)]
    done = _restore(host, 1)
    assert done.returncode == 0, done.stderr
    result = rollback_result(done.stdout.splitlines())
    assert result == {
        "target": 1,
        "from": "2.7.1",
        "to": "2.3.1",
        "how": "conda install --revision 0",
        "recorded": 2,
    }
    assert host.pytorch() == "2.3.1" and "zlib" not in host.names()
    # The state before the rollback is kept, so the rollback can be rolled back.
    done = _restore(host, 2)
    assert done.returncode == 0, done.stderr
    assert host.pytorch() == "2.7.1" and "zlib" in host.names()
    # Put back to a state the env already is: nothing changes, nothing is recorded.
    done = _restore(host, 2)
    assert rollback_result(done.stdout.splitlines())["how"] is None
    assert [s["id"] for s in history_script.load_states(host.prefix)] == [1, 2, 3]


def test_a_state_whose_revision_is_not_it_goes_back_by_its_explicit_list(host: Host) -> None:
    _record(host)
    host.conda_json("install", "-p", host.prefix, "-y", "pytorch=2.7.1", "zlib")
    # The recorded revision no longer holds the state (the env was changed outside conda, or
    # its history rewritten): conda's revert gives something else, the explicit list is used.
    path = Path(host.prefix) / history_script.DIRECTORY / "0001.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "conda_revision": 1}))
    done = _restore(host, 1)
    assert done.returncode == 0, done.stderr
    how = rollback_result(done.stdout.splitlines())["how"]
    assert how == "the recorded explicit list (conda install --file)"
    assert host.pytorch() == "2.3.1" and "zlib" not in host.names()


def test_only_the_newest_states_are_kept(host: Host) -> None:
    for reason in ("a", "b", "c", "d"):
        _record(host, keep=3, reason=reason)
    states = history_script.load_states(host.prefix)
    assert [(s["id"], s["reason"]) for s in states] == [(2, "b"), (3, "c"), (4, "d")]
    files = sorted(p.name for p in (Path(host.prefix) / history_script.DIRECTORY).iterdir())
    assert files == ["0002.json", "0003.json", "0004.json"]


def test_a_state_that_is_not_kept_fails_with_what_is(host: Host) -> None:
    _record(host)
    done = _restore(host, 7)
    assert done.returncode == 1
    assert done.stderr == f"labtorch: no state 7 recorded in {host.prefix} (kept: 1)\n"


def test_list_revisions_as_conda_prints_them(host: Host) -> None:
    host.conda_json("install", "-p", host.prefix, "-y", "pytorch=2.7.1")
    text = host.run(host.conda, "list", "-p", host.prefix, "--revisions").stdout
    lines = text.rstrip("\n").splitlines()
    assert lines[0].endswith("  (rev 0)")
    assert "    +pytorch-2.3.1 (conda-forge/linux-64)" in lines
    assert lines[-3] == "" and lines[-2].endswith("  (rev 1)")
    assert lines[-1] == (
        "     pytorch  {2.3.1 (conda-forge/linux-64) -> 2.7.1 (conda-forge/linux-64)}"
    )
    events = host.conda_json("list", "-p", host.prefix, "--revisions")
    assert [e["rev"] for e in events] == [0, 1]
    assert events[1]["upgrade"] == [
        {
            "old": "pytorch-2.3.1-cpu_0-conda-forge/linux-64",
            "new": "pytorch-2.7.1-cpu_0-conda-forge/linux-64",
        }
    ]
    assert set(events[0]) == {"date", "rev", "install", "remove", "upgrade", "downgrade"}


def test_install_revision_refusals_as_conda_words_them(host: Host) -> None:
    error = host.conda_json("install", "-p", host.prefix, "-y", "--revision", "5", rc=1)
    assert (error["exception_name"], error["message"]) == (
        "CondaIndexError",
        "no such revision: 5",
    )
    error = host.conda_json("install", "-p", host.prefix, "-y", "--revision", "0", "zlib", rc=1)
    assert error["exception_name"] == "CondaValueError"
    assert error["message"].startswith("too many arguments, must supply one of")
    # The revision's packages in no channel given, nor in the env: nothing changes.
    host.conda_json("install", "-p", host.prefix, "-y", "pytorch=2.7.1")
    empty = host.url + "/anaconda/cloud/empty"
    error = host.conda_json(
        "install", "-p", host.prefix, "-y", "--revision", "0", "--override-channels", "-c", empty,
        rc=1,
    )  # fmt: skip
    assert error["exception_name"] == "PackagesNotFoundInChannelsError"
    assert error["packages"] == ["conda-forge/linux-64::pytorch==2.3.1=cpu_0"]
    assert host.pytorch() == "2.7.1"
    done = host.conda_json("install", "-p", host.prefix, "-y", "--revision", "1")
    assert done == {"message": "All requested packages already installed.", "success": True}
