"""GPU profiles of the simulated lab: which real nvidia-smi captures each simulated host replays.

Profiles are data (``labtorch_sim/data/profiles.yaml``), checked when loaded; every problem is a
:class:`~labtorch.data.files.DataError` naming the file and the key. Schema::

    profiles:
      <name>:
        group: gpu | cpu        # pyinfra group of the host (default gpu)
        conda: true | false     # whether the host has a Miniconda in /opt/conda (default true)
        nvidia_smi:             # absent: nvidia-smi is not installed (the shell says so)
          table: FILE           # replayed for `nvidia-smi`
          xml: FILE             # replayed for `nvidia-smi -q -x`
          list: FILE            # replayed for `nvidia-smi -L`
          query: FILE           # replayed for `nvidia-smi -q`
          csv: FILE             # replayed for `--query-gpu` with exactly its own fields
          version: FILE         # replayed for `nvidia-smi --version`
          failure: FILE         # printed for every invocation instead, then ...
          exit_status: N        # ... nvidia-smi exits with this status (required with failure)
        kernel_module: VERSION  # loaded kernel module, when not the user-space driver's version
    lab: [<name>, ...]          # the default lab, lab01 first; --hosts N cycles through it

FILE is a file name in ``tests/fixtures/nvidia-smi/``, or a path (with a ``/``) relative to the
profiles file. A host's GPU facts (driver, CUDA, names, UUIDs, memory, capability, MIG) come from
parsing its captures with :mod:`labtorch.facts.nvidia_smi`, so the data file repeats none of them. A
failure profile may name captures too: they tell what the host has behind the failure (used by
the conda and torch stand-ins). A profiles file given by the user adds to (and may replace) the
packaged profiles, and its ``lab`` replaces the default lab.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from itertools import cycle, islice
from pathlib import Path

from labtorch.data.files import Node, load_data_file
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport, parse_nvidia_smi
from labtorch_sim.fakedriver import table_layout

PACKAGED_PROFILES = Path(__file__).parent / "data" / "profiles.yaml"
FIXTURES_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nvidia-smi"

GROUPS = ("gpu", "cpu")
REPLAYED_FORMS = ("table", "xml", "list", "query", "csv", "version")
# nvidia-smi's exit status for the failures a profile can simulate (nvidia-smi(1), "RETURN VALUE").
FAILURE_EXIT_STATUS = {
    SmiFailureKind.DRIVER_NOT_LOADED: 9,
    SmiFailureKind.NO_DEVICES: 6,
    SmiFailureKind.NVML_MISMATCH: 18,
}
# Forms whose output lists GPUs in nvidia-smi's index order, most complete names first.
_FACT_ORDER = ("xml", "csv", "query", "list", "table")
_BUS_ID = re.compile(r"\b[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]\b")
_VERSION = re.compile(r"^\d+(?:\.\d+)+$")


@dataclass(frozen=True)
class GpuFacts:
    """One simulated GPU, as nvidia-smi reports it."""

    index: int
    name: str
    uuid: str
    bus_id: str
    memory_mib: int | None
    capability: str | None
    mig: bool | None


@dataclass(frozen=True)
class DriverFacts:
    """What a host's captures say about its NVIDIA driver and GPUs."""

    driver: str
    cuda: str | None
    gpus: tuple[GpuFacts, ...]


@dataclass(frozen=True)
class Failure:
    """The output nvidia-smi prints for every invocation on a failing host, and its status."""

    capture: Path
    exit_status: int
    kind: SmiFailureKind


@dataclass(frozen=True)
class Profile:
    """One kind of simulated host."""

    name: str
    group: str
    conda: bool
    has_nvidia_smi: bool
    captures: dict[str, Path]
    failure: Failure | None
    facts: DriverFacts | None
    kernel_module: str | None

    @property
    def driver_loaded(self) -> bool:
        return self.failure is None or self.failure.kind is not SmiFailureKind.DRIVER_NOT_LOADED

    @property
    def kernel_driver(self) -> str | None:
        """The version of the loaded kernel module; None when none is loaded."""
        if not self.has_nvidia_smi or not self.driver_loaded:
            return None
        return self.kernel_module or (self.facts.driver if self.facts else None)

    def fingerprint(self) -> str:
        """Changes whenever anything a host of this profile is built from changes."""
        digest = hashlib.sha256(json.dumps(self._identity(), sort_keys=True).encode())
        for path in sorted({*self.captures.values(), *self._failure_capture()}):
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]

    def _identity(self) -> dict:
        return {
            "name": self.name,
            "group": self.group,
            "conda": self.conda,
            "nvidia_smi": self.has_nvidia_smi,
            "captures": {form: path.name for form, path in self.captures.items()},
            "failure": self.failure.exit_status if self.failure else None,
            "kernel_module": self.kernel_module,
        }

    def _failure_capture(self) -> tuple[Path, ...]:
        return (self.failure.capture,) if self.failure else ()


@dataclass(frozen=True)
class ProfileSet:
    """All known profiles and the default lab (profile names, lab01 first)."""

    profiles: dict[str, Profile]
    lab: tuple[str, ...]

    def for_hosts(self, n_hosts: int | None) -> list[Profile]:
        """The profile of each host: the default lab, or ``n_hosts`` cycling through it."""
        names = self.lab if n_hosts is None else tuple(islice(cycle(self.lab), n_hosts))
        return [self.profiles[name] for name in names]


def load_profiles(path: str | Path | None = None) -> ProfileSet:
    """The packaged profiles, plus (and overridden by) those of the profiles file ``path``."""
    packaged = _read_profile_file(PACKAGED_PROFILES, {})
    if path is None:
        return packaged
    return _read_profile_file(Path(path), packaged.profiles)


def _read_profile_file(path: Path, known: dict[str, Profile]) -> ProfileSet:
    root = load_data_file(path)
    root.mapping({"profiles", "lab"}, required={"lab"})
    profiles = dict(known)
    if root.value.get("profiles") is not None:
        for name, node in root["profiles"].items():
            profiles[name] = parse_profile(name, node, path.parent)
    return ProfileSet(profiles, _lab(root["lab"], profiles))


def _lab(node: Node, profiles: dict[str, Profile]) -> tuple[str, ...]:
    names = node.text_list()
    if not names:
        raise node.error("the lab needs at least one profile")
    for element, name in zip(node.elements(), names, strict=True):
        if name not in profiles:
            raise element.error(f"unknown profile {name!r}; known: {', '.join(sorted(profiles))}")
    return tuple(names)


def parse_profile(name: str, node: Node, base_dir: Path) -> Profile:
    """Read and check one profile, parsing its captures for the host's GPU facts."""
    node.mapping({"group", "conda", "nvidia_smi", "kernel_module"})
    group = node.get("group", "gpu").text()
    if group not in GROUPS:
        raise node.child("group", group).error(f"must be one of {', '.join(GROUPS)}")
    conda = node.get("conda", True).expect(bool, "true or false")
    smi = node.get("nvidia_smi")
    has_smi = smi.value is not None
    captures = _captures(smi, base_dir) if has_smi else {}
    failure = _failure(smi, base_dir) if has_smi else None
    reports = {
        form: _parse_capture(smi.child(form, str(path)), path, form)
        for form, path in captures.items()
    }
    if has_smi and not reports and failure is None:
        raise smi.error("names no capture: give at least one of " + ", ".join(REPLAYED_FORMS))
    facts = _driver_facts(smi, name, reports, captures) if reports else None
    if has_smi and failure is None and facts is None:
        raise smi.error("no capture says which driver this is; add a table or xml capture")
    if facts and "table" not in captures and table_layout(facts.driver) is None:
        raise smi.error(f"no known table layout for driver {facts.driver}; add a table capture")
    kernel_module = _kernel_module(node, facts, failure)
    return Profile(name, group, conda, has_smi, captures, failure, facts, kernel_module)


def _captures(smi: Node, base_dir: Path) -> dict[str, Path]:
    smi.mapping({*REPLAYED_FORMS, "failure", "exit_status"})
    return {
        form: _capture_path(smi[form], base_dir) for form in REPLAYED_FORMS if form in smi.value
    }


def _capture_path(node: Node, base_dir: Path) -> Path:
    name = node.text()
    path = base_dir / name if "/" in name else FIXTURES_DIR / name
    if not path.is_file():
        raise node.error(f"no such capture file: {path}")
    return path


def _parse_capture(node: Node, path: Path, form: str) -> SmiReport:
    result = parse_nvidia_smi(path.read_bytes())
    if isinstance(result, SmiFailure):
        raise node.error(f"is a failure output ({result.kind.value}); name it under failure")
    if result.output_format != form:
        raise node.error(f"is nvidia-smi {result.output_format} output, not {form}")
    return result


def _failure(smi: Node, base_dir: Path) -> Failure | None:
    if "failure" not in smi.value:
        if "exit_status" in smi.value:
            raise smi["exit_status"].error("only goes with failure")
        return None
    capture = _capture_path(smi["failure"], base_dir)
    result = parse_nvidia_smi(capture.read_bytes())
    if not isinstance(result, SmiFailure) or result.kind not in FAILURE_EXIT_STATUS:
        kinds = ", ".join(kind.value for kind in FAILURE_EXIT_STATUS)
        raise smi["failure"].error(f"is not an nvidia-smi failure a host can simulate ({kinds})")
    status_node = smi["exit_status"]
    status = status_node.expect(int, "nvidia-smi's exit status")
    expected = FAILURE_EXIT_STATUS[result.kind]
    if status != expected:
        raise status_node.error(f"nvidia-smi exits with {expected} on {result.kind.value}")
    return Failure(capture, status, result.kind)


def _driver_facts(
    smi: Node, profile: str, reports: dict[str, SmiReport], captures: dict[str, Path]
) -> DriverFacts | None:
    """The driver and GPUs the captures agree on; they must not contradict each other."""
    driver = _agreed(smi, "driver version", {f: r.driver_version for f, r in reports.items()})
    cuda = _agreed(smi, "CUDA version", {f: r.cuda_version for f, r in reports.items()})
    listing = {form: reports[form] for form in _FACT_ORDER if form in reports}
    _agreed(smi, "number of GPUs", {form: len(r.gpus) for form, r in listing.items()})
    if driver is None:
        return None
    count = len(next(iter(listing.values())).gpus) if listing else 0
    bus_ids = _bus_ids(captures, count)
    gpus = tuple(
        _gpu_facts(profile, index, bus_ids[index], [r.gpus[index] for r in listing.values()])
        for index in range(count)
    )
    return DriverFacts(driver, cuda, gpus)


def _agreed(smi: Node, what: str, values: dict[str, object]) -> object:
    known = {form: value for form, value in values.items() if value is not None}
    if len(set(known.values())) > 1:
        found = ", ".join(f"{form}: {value}" for form, value in known.items())
        raise smi.error(f"the captures disagree on the {what} ({found})")
    return next(iter(known.values()), None)


def _gpu_facts(profile: str, index: int, bus_id: str, seen: list) -> GpuFacts:
    """One GPU from every capture that lists it, the most complete value of each field first."""

    def first(field: str) -> object:
        return next((getattr(gpu, field) for gpu in seen if getattr(gpu, field) is not None), None)

    reported = [gpu.capability for gpu in seen if gpu.capability_source == "reported"]
    capability = reported[0] if reported else first("capability")
    return GpuFacts(
        index=index,
        name=first("name") or "",
        uuid=first("uuid") or _made_up_uuid(profile, index),
        bus_id=bus_id,
        memory_mib=first("memory_mib"),
        capability=str(capability) if capability else None,
        mig=first("mig_enabled"),
    )


def _made_up_uuid(profile: str, index: int) -> str:
    """A stable UUID for a GPU whose captures show none (the table has no UUIDs)."""
    digest = hashlib.sha256(f"{profile}/{index}".encode()).hexdigest()
    return f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _bus_ids(captures: dict[str, Path], count: int) -> list[str]:
    """PCI bus ids in GPU order from the first capture that shows one per GPU, else made up."""
    for form in _FACT_ORDER:
        if form in captures:
            text = captures[form].read_text(encoding="utf-8", errors="replace")
            found = list(dict.fromkeys(match.upper() for match in _BUS_ID.findall(text)))
            if len(found) == count:
                return found
    return [f"00000000:{index + 1:02X}:00.0" for index in range(count)]


def _kernel_module(node: Node, facts: DriverFacts | None, failure: Failure | None) -> str | None:
    if "kernel_module" not in node.value:
        if failure is not None and failure.kind is SmiFailureKind.NVML_MISMATCH:
            raise node.error("an NVML mismatch needs kernel_module: the loaded module's version")
        return None
    key = node["kernel_module"]
    version = str(key.value)
    if not _VERSION.match(version):
        raise key.error(f"expected a driver version such as 570.124.06, found {key.value!r}")
    mismatch = facts is not None and version != facts.driver
    if mismatch and (failure is None or failure.kind is not SmiFailureKind.NVML_MISMATCH):
        raise key.error(
            f"a kernel module {version} under driver {facts.driver} makes nvidia-smi fail: "
            "add failure: err_nvml-version-mismatch_570.124.txt with exit_status: 18"
        )
    return version
