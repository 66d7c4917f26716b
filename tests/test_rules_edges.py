"""The rules on what the shipped data and the acceptance tables do not reach: a release whose
conda build has no confirmed arch list (the data allows it: the next release may ship before its
arch list is read), a report without a CUDA version or without GPUs, nvidia-smi failing on a
host asked for the CPU build, and the one-line summaries. Inputs and the expected sentences are
written out."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labtorch.data.compat import load_compat, load_compat_files
from labtorch.data.files import DATA_DIR
from labtorch.data.gpus import ComputeCapability, Gpu
from labtorch.data.mirrors import Mirror, load_catalog
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport
from labtorch.rules.commands import pip_install_locked, render
from labtorch.rules.driver import driver_need, runs_strict
from labtorch.rules.history import listing_fingerprint, rollback_verdict
from labtorch.rules.model import HostFacts, PackagePin, Plan, Request, RequestError
from labtorch.rules.plan import plan_for_host
from labtorch.rules.verdict import Expectation, judge

COMPAT = load_compat()
CATALOG = load_catalog()
A100 = Gpu(0, "NVIDIA A100-SXM4-40GB", capability=ComputeCapability(8, 0))


def report(driver: str | None, cuda: str | None, *gpus: Gpu, form: str = "table") -> SmiReport:
    return SmiReport(driver_version=driver, cuda_version=cuda, gpus=gpus, output_format=form)


# ---- driver -----------------------------------------------------------------------------------


FLOOR_126 = "the full-support floor of CUDA 12.6"


@pytest.mark.parametrize(
    ("driver", "variant", "runs", "why"),
    [
        # A report that gives the driver but not its CUDA version (a CSV query): the driver is
        # held to the full-support floor of the build's CUDA.
        (
            "560.35.03",
            "cu126",
            True,
            "driver 560.35.03 >= 560.28.03, the full-support floor of CUDA 12.6",
        ),
        (
            "560.28.03",
            "cu126",
            True,
            "driver 560.28.03 >= 560.28.03, the full-support floor of CUDA 12.6",
        ),
        (
            "555.42.06",
            "cu126",
            False,
            "CUDA 12.6 needs driver >= 560.28.03; this host has 555.42.06",
        ),
        (
            None,
            "cu118",
            False,
            "CUDA 11.8 needs driver >= 520.61.05; this host has no known driver",
        ),
    ],
)
def test_without_a_cuda_version_the_driver_meets_the_full_support_floor(
    driver, variant, runs, why
) -> None:
    assert runs_strict(variant, report(driver, None, form="csv"), "linux", COMPAT) == (runs, why)


@pytest.mark.parametrize(
    ("variant", "policy", "os_name", "need"),
    [
        ("cu126", "minor", "linux", "driver >= 525.60.13"),
        ("cu126", "minor", "windows", "driver >= 528.33"),
        ("cu126", "strict", "linux", "a driver that supports CUDA 12.6 (>= 560.28.03)"),
        ("cu128", "auto", "windows", "a driver that supports CUDA 12.8 (>= 570.65)"),
    ],
)
def test_the_driver_a_build_needs_under_each_policy(variant, policy, os_name, need) -> None:
    assert driver_need(variant, policy, os_name, COMPAT) == need


# ---- the plan's summary -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reasons", "summary"),
    [
        (
            ("no build of torch 9.9 exists", "torch 9.9 is not a release"),
            "refused: torch 9.9 is not a release",
        ),
        ((), "refused: no reason given"),
    ],
)
def test_a_refusal_summarises_as_its_last_reason(reasons, summary) -> None:
    plan = Plan(
        refused=True, torch_release="9.9", installer="conda", platform="linux-64", reasons=reasons
    )
    assert plan.summary() == summary


TORCH = PackagePin("torch", "2.9.1+cu126", None, "pip", "https://mirror/simple")
NVCC = PackagePin("cuda-nvcc", "12.6", None, "conda-forge", "https://mirror/conda-forge")


@pytest.mark.parametrize(
    ("plan", "summary"),
    [
        (
            Plan(
                False,
                "2.9.1",
                "pip",
                "linux-64",
                "cu126",
                "12.6",
                "3.12",
                (TORCH,),
                (NVCC,),
                reasons=("Python 3.12: the host's", "cu126: the newest CUDA build"),
                warnings=("first warning", "second warning"),
            ),
            "cu126 (CUDA 12.6), Python 3.12: torch==2.9.1+cu126 cuda-nvcc=12.6; "
            "cu126: the newest CUDA build; warning: first warning",
        ),
        (
            Plan(
                False,
                "2.9.1",
                "pip",
                "linux-64",
                "cpu",
                None,
                "3.12",
                (PackagePin("torch", "2.9.1+cpu", None, "pytorch-wheels", "u"),),
                reasons=("Python 3.12: the host's", "CPU build: asked for"),
            ),
            "cpu (no CUDA), Python 3.12: torch==2.9.1+cpu; CPU build: asked for",
        ),
        # No reason names the variant: the first reason is given.
        (
            Plan(
                False,
                "2.9.1",
                "conda",
                "linux-64",
                "cu126",
                "12.6",
                "3.12",
                (PackagePin("pytorch", "2.7.1", None, "conda-forge", "u"),),
                reasons=("Python 3.12: the newest",),
            ),
            "cu126 (CUDA 12.6), Python 3.12: pytorch=2.7.1; Python 3.12: the newest",
        ),
        (
            Plan(False, "2.9.1", "conda", "linux-64", "cu126", "12.6", "3.12"),
            "cu126 (CUDA 12.6), Python 3.12: ; ",
        ),
    ],
)
def test_a_plan_summarises_as_build_pins_and_the_reason_that_chose_it(plan, summary) -> None:
    assert plan.summary() == summary


# ---- nvidia-smi that says nothing usable ------------------------------------------------------


def _plan(facts: HostFacts, compat=COMPAT, **request) -> Plan:
    return plan_for_host(facts, Request(**request), compat, CATALOG)


FAILED = SmiFailure(
    SmiFailureKind.DRIVER_NOT_LOADED,
    "the NVIDIA kernel module is not loaded",
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
)


def test_nvidia_smi_failing_on_a_host_asked_for_cpu_is_a_warning_not_a_refusal() -> None:
    plan = _plan(
        HostFacts(nvidia_smi=FAILED), torch="2.9.1", installer="pip", variant="cpu", python="3.12"
    )
    assert (plan.refused, plan.variant) == (False, "cpu")
    assert plan.warnings[0] == (
        "nvidia-smi failed (driver-not-loaded): the NVIDIA kernel module is not loaded"
    )


@pytest.mark.parametrize(
    ("variant", "refused"),
    [("cpu", False), ("auto", True)],
)
def test_a_report_without_gpus_plans_cpu_only_when_asked(variant, refused) -> None:
    facts = HostFacts(nvidia_smi=report("560.35.03", "12.6", form="version"))
    plan = _plan(facts, torch="2.9.1", installer="pip", variant=variant, python="3.12")
    assert plan.refused == refused
    said = (
        "the nvidia-smi output lists no GPU, so their compute capability cannot be checked; "
        "give the output of `nvidia-smi -q -x` or plain `nvidia-smi`"
    )
    assert (said in plan.reasons) == refused


# ---- a conda build whose arch list is not confirmed -------------------------------------------


@pytest.fixture(scope="module")
def unconfirmed(tmp_path_factory) -> dict:
    """torch 2.3's data with the pytorch channel's arch list of one variant left out, each."""
    compats = {}
    for variant in ("cu118", "cu121"):
        releases = yaml.safe_load((DATA_DIR / "releases.yaml").read_text())
        del releases["releases"]["2.3"]["conda_pytorch"]["arch"][variant]
        path = Path(tmp_path_factory.mktemp(variant)) / "releases.yaml"
        path.write_text(yaml.safe_dump(releases, sort_keys=False))
        compats[variant] = load_compat_files(path, DATA_DIR / "cuda.yaml")
    return compats


UNCONFIRMED_121 = (
    "the arch list of the pytorch conda channel's cu121 build is not confirmed; labtorch could "
    "not check its kernels against the GPUs"
)


@pytest.mark.parametrize("policy", ["auto", "strict", "minor"])
def test_an_unconfirmed_arch_list_is_chosen_with_a_warning(unconfirmed, policy) -> None:
    facts = HostFacts(nvidia_smi=report("550.54.14", "12.4", A100))
    plan = _plan(
        facts, unconfirmed["cu121"], torch="2.3.1", conda_channel="pytorch", driver_policy=policy
    )
    assert (plan.refused, plan.variant) == (False, "cu121")
    assert plan.reasons[1] == (
        "cu121: the newest CUDA build of torch 2.3.1 from the pytorch conda channel that this "
        "host can use; the driver supports CUDA 12.4 >= 12.1; its arch list is not confirmed"
    )
    assert UNCONFIRMED_121 in plan.warnings


def test_auto_does_not_take_a_minor_compat_build_whose_arch_list_is_unconfirmed(
    unconfirmed,
) -> None:
    facts = HostFacts(nvidia_smi=report("470.182.03", "11.4", A100))
    plan = _plan(facts, unconfirmed["cu118"], torch="2.3.1", conda_channel="pytorch")
    assert (plan.refused, plan.variant) == (False, "cpu")
    assert (
        "not cu118 under minor-version compatibility: its arch list is not confirmed, so "
        "labtorch cannot tell whether a GPU would need a JIT"
    ) in plan.reasons


def test_minor_takes_it_and_says_the_arch_list_is_not_confirmed(unconfirmed) -> None:
    facts = HostFacts(nvidia_smi=report("470.182.03", "11.4", A100))
    plan = _plan(
        facts, unconfirmed["cu118"], torch="2.3.1", conda_channel="pytorch", driver_policy="minor"
    )
    assert (plan.refused, plan.variant) == (False, "cu118")
    assert (
        "cu118: the newest CUDA build of torch 2.3.1 from the pytorch conda channel that this "
        "host can use; driver 470.182.03 runs CUDA 11.8 under minor-version compatibility "
        "(needs >= 450.80.02; some features are limited); its arch list is not confirmed"
    ) in plan.reasons


# ---- facts the data marks unconfirmed, a toolkit the mirror lacks ------------------------------


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """The shipped data with CUDA 12.6's full-support floor and torch 2.3's cu121 cuDNN marked
    unconfirmed."""
    folder = Path(tmp_path_factory.mktemp("marked"))
    cuda = yaml.safe_load((DATA_DIR / "cuda.yaml").read_text())
    cuda["cuda"]["12.6"]["unconfirmed"] = ["full"]
    releases = yaml.safe_load((DATA_DIR / "releases.yaml").read_text())
    releases["releases"]["2.3"]["unconfirmed"] = ["conda_pytorch.cudnn.cu121"]
    (folder / "cuda.yaml").write_text(yaml.safe_dump(cuda, sort_keys=False))
    (folder / "releases.yaml").write_text(yaml.safe_dump(releases, sort_keys=False))
    return load_compat_files(folder / "releases.yaml", folder / "cuda.yaml")


def test_an_unconfirmed_driver_floor_is_a_warning(marked) -> None:
    facts = HostFacts(nvidia_smi=report("560.35.03", "12.6", A100))
    plan = _plan(facts, marked, torch="2.9.1", installer="pip", python="3.12")
    assert plan.variant == "cu126"
    assert "the driver floor of CUDA 12.6 (full) is not confirmed" in plan.warnings


def test_an_unconfirmed_cudnn_in_the_build_string_is_a_warning_with_the_check(marked) -> None:
    facts = HostFacts(nvidia_smi=report("550.54.14", "12.4", A100))
    plan = _plan(facts, marked, torch="2.3.1", conda_channel="pytorch")
    assert plan.variant == "cu121"
    assert (
        "the cuDNN part of the build string (cudnn8.9.2) is not confirmed by the reference; "
        "check it with `conda search -c https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/"
        "pytorch pytorch=2.3.1`"
    ) in plan.warnings


def test_a_toolkit_the_mirror_does_not_carry_is_left_out_with_a_warning() -> None:
    tuna = CATALOG["tuna"]
    mirror = Mirror(**{**tuna.__dict__, "name": "pt-only", "channels": ("pytorch", "nvidia")})
    facts = HostFacts(nvidia_smi=report("550.54.14", "12.4", A100))
    plan = plan_for_host(
        facts,
        Request(torch="2.3.1", conda_channel="pytorch", toolkit=True, mirror="pt-only"),
        COMPAT,
        CATALOG.with_mirror(mirror),
    )
    assert (plan.refused, plan.variant, plan.toolkit) == (False, "cu121", ())
    assert (
        plan.warnings[0]
        == "no CUDA toolkit: pt-only does not mirror the conda channel 'conda-forge'"
    )


# ---- small refusals and readings --------------------------------------------------------------


def test_an_unknown_conda_channel_is_refused() -> None:
    with pytest.raises(RequestError) as caught:
        _plan(HostFacts(), torch="2.9.1", conda_channel="anaconda")
    assert str(caught.value) == "unknown conda channel 'anaconda'; use auto, pytorch, conda-forge"


def test_pip_on_macos_takes_pypi_s_cpu_and_mps_wheels() -> None:
    plan = _plan(
        HostFacts(platform="osx-arm64", macos="14.5"), torch="2.9.1", installer="pip", python="3.12"
    )
    assert (plan.refused, plan.variant, plan.cuda) == (False, "cpu", None)
    assert plan.packages[0].spec == "torch==2.9.1"


@pytest.mark.parametrize(
    ("shell", "error"),
    [
        ("fish", "unknown shell 'fish'; use posix, cmd, powershell"),
        ("bash", "unknown shell 'bash'; use posix, cmd, powershell"),
    ],
)
def test_rendering_for_an_unknown_shell_is_refused(shell, error) -> None:
    with pytest.raises(ValueError) as caught:
        render(["pip", "install", "torch"], shell=shell)
    assert str(caught.value) == error


@pytest.mark.parametrize(
    ("unattended", "force", "words"),
    [
        (False, False, ["python", "-m", "pip", "install"]),
        (False, True, ["python", "-m", "pip", "install", "--force-reinstall"]),
    ],
)
def test_a_locked_pip_install_forces_the_reinstall_only_when_asked(unattended, force, words):
    command = pip_install_locked(
        ["python"], "lock.txt", unattended=unattended, force_reinstall=force
    )
    assert command[: len(words)] == words
    assert ("--force-reinstall" in command) == force


@pytest.mark.parametrize(
    ("listing", "fingerprint"),
    [
        (
            (
                "torch-2.9.1+cu126.dist-info",
                "README.txt",
                "__pycache__",
                "Torch_Audio-2.9.1.dist-info",
            ),
            ["torch-audio==2.9.1", "torch==2.9.1+cu126"],
        ),
        ((), []),
    ],
)
def test_a_pip_listing_s_fingerprint_reads_dist_info_folders_only(listing, fingerprint) -> None:
    assert listing_fingerprint("pip", listing) == fingerprint


def test_a_rolled_back_env_without_torch_is_not_the_recorded_state() -> None:
    probe = {
        "packages": {"torch": {"version": None, "error": "No module named 'torch'"}},
        "origins": {},
    }
    verdict = rollback_verdict(probe, "2.3.1", 0)
    assert not verdict.passed
    assert verdict.failures[0] == "torch is missing, not the recorded 2.3.1"


def test_a_companion_that_fails_to_import_fails_the_verdict() -> None:
    probe = {
        "packages": {
            "torch": {"version": "2.9.1+cpu", "error": None},
            "torchvision": {
                "version": None,
                "error": "RuntimeError: operator torchvision::nms does not exist",
            },
            # Not installed at all is not a failure.
            "torchaudio": {"version": None, "error": "No module named 'torchaudio'"},
        },
        "origins": {},
        "gpu": {"cuda": None, "available": False, "arch_list": [], "devices": [], "warnings": []},
        "cpu_matmul": "ok",
    }
    verdict = judge(probe, Expectation("2.9.1+cpu", "cpu", None, 0))
    assert verdict.failures == [
        "torchvision does not import: RuntimeError: operator torchvision::nms does not exist"
    ]
