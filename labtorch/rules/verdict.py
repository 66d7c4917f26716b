"""Does a host's torch really work, with the build the plan chose, from the mirror? (pure)

The probe (``probe_script``) gathers facts on the host with the env's own python; this module
turns them and the plan into a verdict with reasons a lab admin can act on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from labtorch.data.compat import ArchList
from labtorch.data.gpus import ComputeCapability
from labtorch.rules.provenance import is_under

FAMILY = ("torch", "torchvision", "torchaudio")


@dataclass(frozen=True)
class Expectation:
    """What the plan promises for one host.

    + torch: the version torch must report (with its local label on the pip route)
    + variant: the planned variant (``cpu``, ``cu126``, ...)
    + cuda: the build's CUDA version, None for a CPU build
    + gpus: how many GPUs nvidia-smi listed on the host
    + mirrors: the URL prefixes packages may come from (:mod:`labtorch.rules.provenance`)
    + plan_note: why the plan is what it is (shown when a GPU host is given a CPU build)
    + fallbacks: the fallback mirrors' URL prefixes: packages from them pass, with a note
    + count_devices: hold ``torch.cuda.device_count()`` to what nvidia-smi lists (see
      ``_count_problems``); off for a caller that knows too little of the host's GPUs
    + mig_gpus: nvidia-smi's indices of the GPUs in MIG mode
    """

    torch: str
    variant: str
    cuda: str | None
    gpus: int
    mirrors: list[str] = field(default_factory=list)
    plan_note: str = ""
    fallbacks: list[str] = field(default_factory=list)
    count_devices: bool = False
    mig_gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class ProbeVerdict:
    passed: bool
    failures: list[str]
    notes: list[str]


def _kernel(arch_list: list[str], capability: str) -> str | None:
    return ArchList.from_torch(arch_list).kernel_for(ComputeCapability.parse(capability))


def _origin_problems(probe: dict, expected: Expectation) -> tuple[list[str], list[str]]:
    """Packages that came from anywhere but the mirror (failures); unknown origins and packages
    that a fallback mirror served (notes: the first mirror failed that install). What counts as
    the mirror: :mod:`labtorch.rules.provenance`."""
    failures, notes = [], []
    for name in FAMILY:
        origin = (probe.get("origins") or {}).get(name)
        if not origin or probe["packages"].get(name, {}).get("version") is None:
            continue
        url = origin.get("url")
        if url is None:
            notes.append(f"{name}: where pip downloaded it from was not recorded")
        elif is_under(url, expected.mirrors):
            continue
        elif is_under(url, expected.fallbacks):
            notes.append(
                f"{name} came from the fallback mirror {urlsplit(url).netloc}: the first mirror "
                "failed this install; check it with `labtorch mirrors`"
            )
        else:
            allowed = ", ".join(
                sorted(
                    {urlsplit(u).netloc for u in expected.fallbacks}
                    | {urlsplit(u).netloc for u in expected.mirrors[:1]}
                )
            )
            failures.append(f"{name} came from {url}, not from the mirror ({allowed})")
    return failures, notes


def _mig_note(expected: Expectation) -> str:
    indices = ", ".join(str(index) for index in expected.mig_gpus)
    return (
        f"GPU {indices} in MIG mode: CUDA runs only on a MIG compute instance, one per process, "
        "and shows no GPU outside MIG while it does"
    )


def _count_problems(gpu: dict, expected: Expectation) -> list[str]:
    """Does torch see every GPU? Without MIG each GPU nvidia-smi lists is one CUDA device.

    With MIG on, CUDA (11 from R450, 12 from R525; NVIDIA's MIG user guide, "CUDA Device
    Enumeration") enumerates a single MIG compute instance per process, the first it finds (or
    the first that CUDA_VISIBLE_DEVICES names: ``MIG-<uuid>``), and no non-MIG GPU once it
    enumerates one: an 8-GPU host with MIG on gives CUDA one device. torch.cuda.device_count()
    may still say more: torch >= 2.0 counts through NVML (``_device_count_nvml``), which lists
    the parent GPUs, unless CUDA_VISIBLE_DEVICES names MIG devices. So with MIG on torch must
    see at least one device, and only the first is held to work (the others are noted).
    """
    seen = len(gpu.get("devices") or [])
    if expected.mig_gpus or not expected.count_devices or seen in (0, expected.gpus):
        return []
    visible = gpu.get("visible_devices")
    why = (
        f"CUDA_VISIBLE_DEVICES={visible} in the environment the deploy's SSH session gets "
        "hides the others"
        if visible is not None
        else "check CUDA_VISIBLE_DEVICES in the SSH session's environment (/etc/environment, "
        "shell profiles), GPUs in an error state (`nvidia-smi -q`) and Xid errors in dmesg"
    )
    return [f"torch sees {seen} of the {expected.gpus} GPU(s) nvidia-smi lists: {why}"]


def _gpu_problems(probe: dict, expected: Expectation) -> tuple[list[str], list[str]]:
    """Failures and notes about the GPUs."""
    gpu = probe.get("gpu") or {}
    if expected.gpus == 0:
        return [], []
    if expected.cuda is None:
        return [f"a CPU build on a host with {expected.gpus} GPU(s): {expected.plan_note}"], []
    if gpu.get("cuda") is None:
        return [f"torch is a CPU build, the plan says {expected.variant}"], []
    if gpu["cuda"] != expected.cuda:
        return [f"torch is built for CUDA {gpu['cuda']}, the plan says {expected.cuda}"], []
    if not gpu.get("available"):
        why = "; ".join(gpu.get("warnings") or []) or gpu.get("error") or "no reason given"
        if expected.mig_gpus:
            why += f" ({_mig_note(expected)}: create one, `nvidia-smi mig -cgi <profile> -C`)"
        return [f"torch.cuda.is_available() is False: {why}"], []
    failures = _count_problems(gpu, expected)
    notes = []
    for device in gpu.get("devices", []):
        device_failures = _device_problems(gpu, device)
        if expected.mig_gpus and device["index"] > 0 and device_failures:
            notes += [f"{line} ({_mig_note(expected)})" for line in device_failures]
        else:
            failures += device_failures
    if not gpu.get("devices"):
        failures.append("torch sees no GPU")
    return failures, notes


def _device_problems(gpu: dict, device: dict) -> list[str]:
    if device["capability"] is None:
        return [f"GPU {device['index']}: torch cannot query it: {device['matmul']}"]
    failures = []
    kernel = _kernel(gpu.get("arch_list", []), device["capability"])
    where = f"GPU {device['index']} {device['name']} (sm_{device['capability'].replace('.', '')})"
    if kernel is None:
        failures.append(
            f"{where}: the build's kernels ({', '.join(gpu['arch_list'])}) do not cover it"
        )
    if device["matmul"] != "ok":
        failures.append(f"{where}: matmul failed: {device['matmul']}")
    return failures


def judge(probe: dict | None, expected: Expectation) -> ProbeVerdict:
    """The verdict for one host; ``probe`` is what probe_script printed (None: no python/env)."""
    if probe is None:
        return ProbeVerdict(False, ["the env has no python to probe"], [])
    torch = probe.get("packages", {}).get("torch", {})
    if torch.get("version") is None:
        return ProbeVerdict(False, [f"torch does not import: {torch.get('error')}"], [])
    failures = []
    if torch["version"] != expected.torch:
        failures.append(f"torch {torch['version']} is installed, the plan says {expected.torch}")
    for name in FAMILY[1:]:
        error = probe["packages"].get(name, {}).get("error")
        if error and "No module named" not in error:
            failures.append(f"{name} does not import: {error}")
    gpu_failures, gpu_notes = _gpu_problems(probe, expected)
    failures += gpu_failures
    if probe.get("cpu_matmul") != "ok":
        failures.append(f"a matmul on the CPU failed: {probe.get('cpu_matmul')}")
    origin_failures, notes = _origin_problems(probe, expected)
    failures += origin_failures
    return ProbeVerdict(not failures, failures, gpu_notes + notes)
