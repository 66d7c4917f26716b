"""The operations that install an env from its lock (labtorch.operations.locked): the commands
they run for each difference, in their order, and the awk line that names a hash mismatch."""

from __future__ import annotations

import subprocess

from pyinfra.context import ctx_host, ctx_state
from pyinfra_testing.util import FakeState, create_host
from test_locks import CONDA_LOCK, CUDA_VERSION, EXTRA, PYTHON, PYTORCH, TORCH_WHEEL, TRITON, M

from labtorch.facts.host_state import InstalledPackage
from labtorch.operations import locked
from labtorch.operations.locked import _HASH_SUMMARY
from labtorch.rules.locks import LockClass

LOCK = LockClass("conda", "conda-forge", "linux-64", "3.11", "2.7.1", "cu126", "12.6", False,
                 (M,))  # fmt: skip
PIP_LOCK = LockClass("pip", "pip", "linux-64", "3.11", "2.9.1+cu126", "cu126", "12.6", False)
PREFIX = "/opt/conda/envs/torch"
FALLBACK = [[("https://mirrors.tuna.tsinghua.edu.cn/", "https://mirrors.bfsu.edu.cn/")]]


def _run(op, **kwargs) -> tuple[list[str], str | None]:
    state = FakeState()
    fake = create_host(state, facts={})
    with ctx_state.use(state), ctx_host.use(fake):
        commands = [command.get_raw_value() for command in op._inner(**kwargs)]
    return commands, getattr(fake, "noop_description", None)


def _installed(*packages):
    return {p.name: InstalledPackage(p.name, p.version, p.build, p.url) for p in packages}


def _conda(installed, **kwargs):
    return _run(
        locked.conda_env, conda="/opt/conda/bin/conda", prefix=PREFIX, lock_id="x", lock=LOCK,
        packages=CONDA_LOCK, kind="sha256", installed=installed, **kwargs,
    )  # fmt: skip


def test_a_matching_env_runs_nothing():
    commands, noop = _conda(_installed(*CONDA_LOCK))
    assert commands == []
    assert noop == f"conda env {PREFIX} holds exactly the 3 packages of x"


def test_a_new_env_is_created_from_the_whole_lock_then_from_each_fallback():
    (chain,) = _conda(None, fallbacks=FALLBACK)[0]
    first, second = chain.split(" || ( lock=")
    assert f'/opt/conda/bin/conda create -p {PREFIX} --file "$lock" -y -q' in first
    for package in CONDA_LOCK:
        assert f"{package.url}#{package.sha256}" in first
        assert package.url.replace("tuna.tsinghua", "bfsu") + f"#{package.sha256}" in second
    assert "repodata" not in chain and "--override-channels" not in chain


def test_drift_installs_only_what_differs_then_removes_what_the_lock_lacks():
    commands, _ = _conda(_installed(PYTHON, CUDA_VERSION, EXTRA))
    install, remove = commands
    assert f"install -p {PREFIX} --file" in install
    assert PYTORCH.url in install and PYTHON.url not in install
    assert remove == f"/opt/conda/bin/conda remove -p {PREFIX} --offline -y -q numpy"


def test_an_md5_host_gets_md5_lines():
    (chain,) = _run(
        locked.conda_env, conda="conda", prefix=PREFIX, lock_id="x", lock=LOCK,
        packages=CONDA_LOCK, kind="md5", installed=None,
    )[0]  # fmt: skip
    assert f"{PYTHON.url}#{PYTHON.md5}\n" in chain and PYTHON.sha256 not in chain


def test_a_venv_installs_hashed_references_with_no_index_before_removing_extras():
    venv = {
        "torch": InstalledPackage("torch", "2.9.1+cpu", None, None),
        "requests": InstalledPackage("requests", "2.32", None, None),
        "triton": InstalledPackage("triton", "3.5.1", None, None),
    }
    commands, _ = _run(
        locked.venv, python="python3", prefix="/v", lock_id="p", lock=PIP_LOCK,
        packages=[TORCH_WHEEL, TRITON], installed=venv,
    )  # fmt: skip
    install, uninstall = commands
    assert '--no-deps --require-hashes --no-index -r "$lock"' in install
    assert f"torch @ {TORCH_WHEEL.url}" in install and "triton @" not in install
    assert uninstall == "/v/bin/python -m pip uninstall -y -q requests"


def _summary(output: str) -> str:
    done = subprocess.run(["sh", "-c", _HASH_SUMMARY], input=output, capture_output=True,
                          text=True, check=True)  # fmt: skip
    return done.stdout.strip()


def test_conda_and_pip_hash_mismatches_are_named_with_both_hashes():
    conda = (
        "CondaMultiError: Conda detected a mismatch between the expected content and downloaded"
        " content\nfor url 'http://m/conda-forge/linux-64/torchaudio-2.7.1-h_0.conda'.\n"
        "  download saved to: /opt/conda/pkgs/torchaudio-2.7.1-h_0.conda\n"
        "  expected sha256: aaa\n  actual sha256: bbb\n"
    )
    assert _summary(conda) == (
        "labtorch: hash mismatch: torchaudio-2.7.1-h_0.conda: the lock says sha256 aaa, the "
        "mirror served bbb"
    )
    pip = (
        "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE.\n"
        "    torchaudio@ http://m/cpu/torchaudio-2.9.1%2Bcpu-cp311-none.whl from "
        "http://m/cpu/torchaudio-2.9.1%2Bcpu-cp311-none.whl (from -r /tmp/x (line 4)):\n"
        "        Expected sha256 ccc\n             Got        ddd\n"
    )
    assert _summary(pip) == (
        "labtorch: hash mismatch: torchaudio-2.9.1+cpu-cp311-none.whl: the lock says sha256 "
        "ccc, the mirror served ddd"
    )
