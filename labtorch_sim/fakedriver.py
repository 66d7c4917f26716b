"""The NVIDIA driver as a simulated host shows it: a fake ``nvidia-smi``, the kernel module's
version files and ``/etc/labtorch-sim/host.json``, all rendered from a :class:`Profile`.

``nvidia-smi`` is a small POSIX sh ``case`` over canned outputs in
``/usr/local/share/labtorch-sim/``: the profile's real captures byte for byte, and for the forms
it has no capture of, output generated in that driver's own format (table layout of the driver's
era, ``-q -x`` XML, ``-L``, ``--query-gpu`` CSV, ``--version``). Anything else it is asked says
plainly that the simulation does not cover it. On a failure profile every invocation prints the
failure capture and exits with nvidia-smi's status for it.

Table layouts follow the real captures in ``tests/fixtures/nvidia-smi``: 79 columns up to driver
525, 91 from 550 (process columns moved in 570, the rule under the header became ``+`` in 580,
"KMD Version" replaced "Driver Version" in 610). 530-549 varied between releases and older drivers
had no MIG row, so a profile for those drivers needs a table capture.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from labtorch_sim.profiles import DriverFacts, GpuFacts, Profile

SHARE = "/usr/local/share/labtorch-sim"
"""Where a host's canned nvidia-smi outputs live (inside the host)."""

EXECUTABLE = 0o755
_TIMESTAMP = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}")
_DEFAULT_TIMESTAMP = "Fri Nov 27 09:00:00 2026"
_MODULE_BUILD_DATE = "Tue Sep 30 11:57:26 UTC 2025"
_GCC = "gcc version 12.2.0 (Debian 12.2.0-14+deb12u1) "
_XML_FORMS = ("-q -x", "-x -q", "-q --xml-format", "--query --xml-format")

HostFiles = dict[str, tuple[bytes, int]]
"""Files of a host: path relative to the directory they go in -> (content, mode)."""


def driver_major(version: str) -> int:
    return int(version.split(".")[0])


# --- host.json -----------------------------------------------------------------------------------


def host_json(profile: Profile, host: str) -> dict | None:
    """What the conda and torch stand-ins read; None on a host without the NVIDIA driver."""
    if not profile.has_nvidia_smi:
        return None
    facts = profile.facts
    return {
        "name": host,
        "profile": profile.name,
        "driver_loaded": profile.driver_loaded,
        "driver": facts.driver if facts else None,
        "kernel_driver": profile.kernel_driver,
        "cuda": facts.cuda if facts else None,
        "gpus": [_gpu_json(gpu) for gpu in facts.gpus] if facts else [],
    }


def _gpu_json(gpu: GpuFacts) -> dict:
    return {
        "index": gpu.index,
        "name": gpu.name,
        "capability": gpu.capability,
        "memory_mib": gpu.memory_mib,
        "uuid": gpu.uuid,
        "mig": bool(gpu.mig),
    }


# --- kernel module -------------------------------------------------------------------------------


def kernel_module_files(profile: Profile) -> tuple[HostFiles, HostFiles]:
    """``/proc/driver`` and ``/sys/module`` contents: the loaded module's version, if any."""
    version = profile.kernel_driver
    if version is None:
        return {}, {}
    proc = (
        f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  {_MODULE_BUILD_DATE}\n"
        f"GCC version:  {_GCC}\n"
    )
    return {"nvidia/version": (proc.encode(), 0o444)}, {
        "nvidia/version": (f"{version}\n".encode(), 0o444)
    }


# --- nvidia-smi ----------------------------------------------------------------------------------


def nvidia_smi_files(profile: Profile) -> HostFiles:
    """Files under the host's ``/usr/local``: ``bin/nvidia-smi`` and its canned outputs."""
    if not profile.has_nvidia_smi:
        return {}
    if profile.failure is not None:
        return _failing_smi(profile)
    outputs = _outputs(profile)
    files = {f"share/labtorch-sim/{name}": (data, 0o644) for name, data in outputs.items()}
    files["share/labtorch-sim/query-gpu.awk"] = (_QUERY_GPU_AWK.encode(), 0o644)
    files["bin/nvidia-smi"] = (_script(profile, outputs).encode(), EXECUTABLE)
    return files


def _failing_smi(profile: Profile) -> HostFiles:
    failure = profile.failure
    script = (
        "#!/bin/sh\n"
        f"# labtorch simulated lab, profile {profile.name}: nvidia-smi fails "
        f"({failure.kind.value}) whatever it is asked.\n"
        f'cat "{SHARE}/failure"\n'
        f"exit {failure.exit_status}\n"
    )
    return {
        "share/labtorch-sim/failure": (failure.capture.read_bytes(), 0o644),
        "bin/nvidia-smi": (script.encode(), EXECUTABLE),
    }


def _outputs(profile: Profile) -> dict[str, bytes]:
    """Each canned output: the capture where the profile has one, else generated."""
    facts = profile.facts
    generated: dict[str, Callable[[], str]] = {
        "table": lambda: render_table(facts, _timestamp(profile), _xml_states(profile)),
        "xml": lambda: render_xml(facts, _timestamp(profile)),
        "list": lambda: render_list(facts),
        "version": lambda: render_version(facts),
        "query-gpu.tsv": lambda: render_query_table(facts),
    }
    outputs = {form: path.read_bytes() for form, path in profile.captures.items()}
    for name, render in generated.items():
        if name not in outputs:
            outputs[name] = render().encode()
    if "csv" in profile.captures:
        outputs["csv.args"] = _csv_args(outputs["csv"]).encode()
    return outputs


def _script(profile: Profile, outputs: dict[str, bytes]) -> str:
    branches = [
        ('""', 'exec cat "$d/table"'),
        (" | ".join(f'"{form}"' for form in _XML_FORMS), 'exec cat "$d/xml"'),
        ('"-L" | "--list-gpus"', 'exec cat "$d/list"'),
        ('"--version"', 'exec cat "$d/version"'),
    ]
    if "query" in outputs:
        branches.append(('"-q" | "--query"', 'exec cat "$d/query"'))
    query_gpu = 'exec awk -v args="$*" -v table="$d/query-gpu.tsv" -f "$d/query-gpu.awk"'
    if "csv" in outputs:
        query_gpu = f'[ "$*" = "$(cat "$d/csv.args")" ] && exec cat "$d/csv"\n\t{query_gpu}'
    branches.append(("*--query-gpu=*", query_gpu))
    branches.append(
        ("*", f'echo "nvidia-smi $*: not simulated for profile {profile.name}" >&2; exit 2')
    )
    body = "".join(f"{pattern})\n\t{action} ;;\n" for pattern, action in branches)
    return (
        "#!/bin/sh\n"
        f"# labtorch simulated lab: nvidia-smi of profile {profile.name}, canned in {SHARE}.\n"
        f"d={SHARE}\n"
        f'case "$*" in\n{body}esac\n'
    )


def _csv_args(capture: bytes) -> str:
    """The command line that printed a ``--query-gpu`` capture (its header names the fields)."""
    header = capture.decode("utf-8", errors="replace").splitlines()[0]
    fields = [re.sub(r"\s*\[[^\]]*\]$", "", cell.strip()) for cell in header.split(",")]
    return f"--query-gpu={','.join(fields)} --format=csv\n"


def _timestamp(profile: Profile) -> str:
    """The capture's own timestamp, so that generated forms look taken at the same moment."""
    for path in profile.captures.values():
        text = path.read_text(encoding="utf-8", errors="replace")
        match = _TIMESTAMP.match(text) or re.search(r"<timestamp>([^<]+)</timestamp>", text)
        if match:
            return match.group(match.lastindex or 0)
    return _DEFAULT_TIMESTAMP


# --- -L, --version -------------------------------------------------------------------------------


def render_list(facts: DriverFacts) -> str:
    return "".join(f"GPU {gpu.index}: {gpu.name} (UUID: {gpu.uuid})\n" for gpu in facts.gpus)


def render_version(facts: DriverFacts) -> str:
    driver, cuda = facts.driver, facts.cuda or "N/A"
    nvml = ".".join(driver.split(".")[:2])
    lines = [("NVIDIA-SMI version", driver), ("NVML version", nvml)]
    if driver_major(driver) >= 610:
        lines += [
            ("DRIVER version", 'Deprecated, see "KMD version" instead'),
            ("CUDA version", 'Deprecated, see "CUDA UMD version" instead'),
            ("KMD version", driver),
            ("CUDA UMD version", cuda),
        ]
    else:
        lines += [("DRIVER version", driver), ("CUDA Version", cuda)]
    return "".join(f"{key:<20}: {value}\n" for key, value in lines)


# --- --query-gpu ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _QueryField:
    header: str
    unit: str
    value: Callable[[DriverFacts, GpuFacts], str]
    since_driver: int = 0


_QUERY_FIELDS = {
    "index": _QueryField("index", "", lambda f, g: str(g.index)),
    "name": _QueryField("name", "", lambda f, g: g.name),
    "uuid": _QueryField("uuid", "", lambda f, g: g.uuid),
    "driver_version": _QueryField("driver_version", "", lambda f, g: f.driver),
    "memory.total": _QueryField(
        "memory.total [MiB]", " MiB", lambda f, g: _or_na(g.memory_mib and str(g.memory_mib))
    ),
    "compute_cap": _QueryField("compute_cap", "", lambda f, g: _or_na(g.capability), 510),
    "mig.mode.current": _QueryField("mig.mode.current", "", lambda f, g: _or_na(_enabled(g.mig))),
    "pci.bus_id": _QueryField("pci.bus_id", "", lambda f, g: g.bus_id),
}


def _or_na(value: str | None) -> str:
    return value or "[N/A]"


def _enabled(flag: bool | None) -> str | None:
    return None if flag is None else ("Enabled" if flag else "Disabled")


def render_query_table(facts: DriverFacts) -> str:
    """Tab-separated rows ``field, CSV header, unit, value per GPU`` read by the awk script."""
    major = driver_major(facts.driver)
    rows = [
        [field, spec.header, spec.unit, *(spec.value(facts, gpu) for gpu in facts.gpus)]
        for field, spec in _QUERY_FIELDS.items()
        if major >= spec.since_driver
    ]
    return "".join("\t".join(row) + "\n" for row in rows)


_QUERY_GPU_AWK = r"""# nvidia-smi --query-gpu=FIELD,... --format=csv[,noheader][,nounits]
# from query-gpu.tsv (rows: field, CSV header, unit, one value per GPU).
BEGIN {
	n = split(args, arg, " ")
	for (i = 1; i <= n; i++) {
		if (arg[i] ~ /^--query-gpu=/) fields = substr(arg[i], 13)
		else if (arg[i] ~ /^--format=/) format = substr(arg[i], 10)
		else other = other " " arg[i]
	}
	if (other != "" || format !~ /^csv(,(noheader|nounits))*$/) {
		print "nvidia-smi " args ": not simulated" > "/dev/stderr"
		exit 2
	}
	while ((getline line < table) > 0) {
		cells = split(line, cell, "\t")
		header[cell[1]] = cell[2]
		unit[cell[1]] = cell[3]
		gpus = cells - 3
		for (g = 1; g <= gpus; g++) value[cell[1], g] = cell[g + 3]
	}
	count = split(fields, field, ",")
	for (k = 1; k <= count; k++) {
		if (!(field[k] in header)) {
			printf "Field \"%s\" is not a valid field to query.\n\n", field[k]
			exit 2
		}
	}
	if (format !~ /noheader/) {
		for (k = 1; k <= count; k++) printf "%s%s", (k > 1 ? ", " : ""), header[field[k]]
		print ""
	}
	for (g = 1; g <= gpus; g++) {
		for (k = 1; k <= count; k++) {
			v = value[field[k], g]
			if (format !~ /nounits/ && v !~ /^\[/) v = v unit[field[k]]
			printf "%s%s", (k > 1 ? ", " : ""), v
		}
		print ""
	}
}
"""


# --- -q -x ---------------------------------------------------------------------------------------


def _dtd_version(driver: str) -> int:
    major = driver_major(driver)
    return 13 if major >= 590 else 12 if major >= 525 else 11 if major >= 450 else 10


def render_xml(facts: DriverFacts, timestamp: str) -> str:
    """``nvidia-smi -q -x`` in the real structure (the elements labtorch and tools read)."""
    head = [
        '<?xml version="1.0" ?>',
        f'<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v{_dtd_version(facts.driver)}.dtd">',
        "<nvidia_smi_log>",
        f"\t<timestamp>{timestamp}</timestamp>",
        f"\t<driver_version>{facts.driver}</driver_version>",
        f"\t<cuda_version>{facts.cuda or 'Not Found'}</cuda_version>",
        f"\t<attached_gpus>{len(facts.gpus)}</attached_gpus>",
    ]
    gpus = [line for gpu in facts.gpus for line in _xml_gpu(gpu)]
    return "\n".join([*head, *gpus, "</nvidia_smi_log>", ""])


def _xml_gpu(gpu: GpuFacts) -> list[str]:
    mig = _enabled(gpu.mig) or "N/A"
    memory = f"{gpu.memory_mib} MiB" if gpu.memory_mib is not None else "N/A"
    bus = gpu.bus_id
    return [
        f"\t<gpu id={quoteattr(bus)}>",
        f"\t\t<product_name>{escape(gpu.name)}</product_name>",
        "\t\t<mig_mode>",
        f"\t\t\t<current_mig>{mig}</current_mig>",
        f"\t\t\t<pending_mig>{mig}</pending_mig>",
        "\t\t</mig_mode>",
        f"\t\t<uuid>{gpu.uuid}</uuid>",
        f"\t\t<minor_number>{gpu.index}</minor_number>",
        "\t\t<pci>",
        f"\t\t\t<pci_bus>{bus[9:11]}</pci_bus>",
        f"\t\t\t<pci_device>{bus[12:14]}</pci_device>",
        f"\t\t\t<pci_domain>{bus[:8]}</pci_domain>",
        f"\t\t\t<pci_bus_id>{bus}</pci_bus_id>",
        "\t\t</pci>",
        "\t\t<fb_memory_usage>",
        f"\t\t\t<total>{memory}</total>",
        "\t\t</fb_memory_usage>",
        "\t</gpu>",
    ]


# --- the default table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuState:
    """The live values a table row shows besides the facts (idle defaults)."""

    persistence: str = "Off"
    display: str = "Off"
    ecc: str = "N/A"
    fan: str = "N/A"
    temperature: str = "30C"
    perf: str = "P8"
    power: str = "N/A"
    power_cap: str = "N/A"
    memory_used: str = "0MiB"
    utilization: str = "0%"
    compute_mode: str = "Default"


def _xml_states(profile: Profile) -> list[GpuState]:
    """Each GPU's live values from the profile's XML capture, when it has one."""
    path = profile.captures.get("xml")
    if path is None:
        return []
    text = re.sub(r"<!DOCTYPE[^>]*>", "", path.read_text(encoding="utf-8", errors="replace"))
    return [_gpu_state(element) for element in ET.fromstring(text.strip()).findall("gpu")]


def _gpu_state(gpu: ET.Element) -> GpuState:
    def first(*paths: str) -> str | None:
        found = (gpu.findtext(path) for path in paths)
        return next((text.strip() for text in found if text and text.strip() != "N/A"), None)

    def watts(*paths: str) -> str:
        value = first(*paths)
        return f"{round(float(value.split()[0]))}W" if value else "N/A"

    readings = ("power_readings", "gpu_power_readings")
    return GpuState(
        persistence="On" if first("persistence_mode") == "Enabled" else "Off",
        display="On" if first("display_active") == "Enabled" else "Off",
        ecc="0" if first("ecc_mode/current_ecc") == "Enabled" else "N/A",
        fan=(first("fan_speed") or "N/A").replace(" ", ""),
        temperature=(first("temperature/gpu_temp") or "N/A").replace(" ", ""),
        perf=first("performance_state") or "P8",
        power=watts(*(f"{r}/{k}" for r in readings for k in ("power_draw", "instant_power_draw"))),
        power_cap=watts(
            *(f"{r}/{k}" for r in readings for k in ("power_limit", "current_power_limit"))
        ),
        memory_used=(first("fb_memory_usage/used") or "0 MiB").replace(" ", ""),
        utilization=(first("utilization/gpu_util") or "0 %").replace(" ", ""),
        compute_mode=first("compute_mode") or "Default",
    )


@dataclass(frozen=True)
class _Layout:
    """One driver era's table: widths of the three GPU columns and its fixed lines."""

    cells: tuple[int, int, int]
    name_width: int
    header: str
    heads: tuple[str, str, str]
    process_heads: tuple[str, str]
    plus_rule: bool
    spacer: int


_NARROW_HEADS = (
    " GPU  Name        Persistence-M| Bus-Id        Disp.A | Volatile Uncorr. ECC ",
    " Fan  Temp  Perf  Pwr:Usage/Cap|         Memory-Usage | GPU-Util  Compute M. ",
    "                               |                      |               MIG M. ",
)
_WIDE_HEADS = (
    " GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC ",
    " Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. ",
    "                                         |                        |               MIG M. ",
)
_WIDE_HEADER = "NVIDIA-SMI {smi:<23}Driver Version: {driver:<15}CUDA Version: {cuda:<9}"
_WIDE_USAGE = (
    "        ID   ID                                                               Usage      "
)
_R570_PROCESSES = (
    "  GPU   GI   CI              PID   Type   Process name                        GPU Memory ",
    _WIDE_USAGE,
)
_R580 = dict(cells=(41, 24, 22), name_width=27, heads=_WIDE_HEADS, plus_rule=True, spacer=0)

# First driver of each era -> its layout; 530-549 left out on purpose (see the module docstring).
_LAYOUTS: dict[int, _Layout | None] = {
    450: _Layout(
        cells=(31, 22, 22),
        name_width=18,
        header="NVIDIA-SMI {smi:<13}Driver Version: {driver:<13}CUDA Version: {cuda:<9}",
        heads=_NARROW_HEADS,
        process_heads=(
            "  GPU   GI   CI        PID   Type   Process name                  GPU Memory ",
            "        ID   ID                                                   Usage      ",
        ),
        plus_rule=False,
        spacer=79,
    ),
    530: None,
    550: _Layout(
        cells=(41, 24, 22),
        name_width=27,
        header=_WIDE_HEADER,
        heads=_WIDE_HEADS,
        process_heads=(
            "  GPU   GI   CI        PID   Type   Process name"
            "                              GPU Memory ",
            _WIDE_USAGE,
        ),
        plus_rule=False,
        spacer=89,
    ),
    570: _Layout(
        cells=(41, 24, 22),
        name_width=27,
        header=_WIDE_HEADER,
        heads=_WIDE_HEADS,
        process_heads=_R570_PROCESSES,
        plus_rule=False,
        spacer=89,
    ),
    580: _Layout(header=_WIDE_HEADER, process_heads=_R570_PROCESSES, **_R580),
    610: _Layout(
        header="NVIDIA-SMI {smi:<23}KMD Version: {driver:<14}CUDA UMD Version: {cuda:<9}",
        process_heads=_R570_PROCESSES,
        **_R580,
    ),
}


def table_layout(driver: str) -> _Layout | None:
    """The table layout of this driver's era; None where no capture shows it."""
    major = driver_major(driver)
    eras = [first for first in _LAYOUTS if first <= major]
    return _LAYOUTS[max(eras)] if eras else None


def render_table(facts: DriverFacts, timestamp: str, states: list[GpuState]) -> str:
    """The default ``nvidia-smi`` table, laid out as this driver's era prints it."""
    layout = table_layout(facts.driver)
    if layout is None:
        raise ValueError(f"no known table layout for driver {facts.driver}: add a table capture")
    states = states or [GpuState() for _ in facts.gpus]
    width = sum(layout.cells) + 4
    header = layout.header.format(smi=facts.driver, driver=facts.driver, cuda=facts.cuda or "N/A")
    lines = [f"{timestamp}       ", _rule("-", width), f"| {header}|"]
    lines.append(_column_rule("-", layout.cells, "+" if layout.plus_rule else "|", "+"))
    lines += [f"|{head}|" for head in layout.heads]
    lines.append(_column_rule("=", layout.cells, "|", "|"))
    for gpu, state in zip(facts.gpus, states, strict=True):
        lines += _gpu_rows(layout, gpu, state)
        lines.append(_column_rule("-", layout.cells, "+", "+"))
    lines.append(" " * layout.spacer)
    lines += _processes_box(layout, width)
    return "\n".join(lines) + "\n"


def _rule(char: str, width: int) -> str:
    return "+" + char * (width - 2) + "+"


def _column_rule(char: str, cells: tuple[int, ...], left: str, right: str) -> str:
    return left + "+".join(char * cell for cell in cells) + right


def _gpu_rows(layout: _Layout, gpu: GpuFacts, state: GpuState) -> list[str]:
    narrow = layout.cells[0] == 31
    name = _shorten(gpu.name, layout.name_width)
    total = f"{gpu.memory_mib}MiB" if gpu.memory_mib is not None else "N/A"
    mig = _enabled(gpu.mig) or "N/A"
    if narrow:
        first = f"{gpu.index:>4}  {name}  {state.persistence:<5}"
        second = (
            f" {state.fan:>3}   {state.temperature:>3}    {state.perf:<2}   "
            f"{state.power:>4} / {state.power_cap:>4} "
        )
        bus = f" {gpu.bus_id} {state.display:<3} "
        memory = f"{state.memory_used:>10} / {total:>8} "
    else:
        first = f"{gpu.index:>4}  {name}    {state.persistence:<3} "
        second = (
            f" {state.fan:>3}   {state.temperature:>3}    {state.perf:<2}"
            f"{state.power:>16} / {state.power_cap:>5} "
        )
        bus = f"   {gpu.bus_id} {state.display:<3} "
        memory = f"{state.memory_used:>11} / {total:>9} "
    usage = f"{state.utilization:>8}{state.compute_mode:>13} "
    blank_first, blank_second = " " * layout.cells[0], " " * layout.cells[1]
    return [
        f"|{first}|{bus}|{state.ecc:>21} |",
        f"|{second}|{memory}|{usage}|",
        f"|{blank_first}|{blank_second}|{mig:>21} |",
    ]


def _shorten(name: str, width: int) -> str:
    """The name as the table shows it: cut to fit with "..." and padded."""
    return (name if len(name) <= width else name[: width - 3] + "...").ljust(width)


def _processes_box(layout: _Layout, width: int) -> list[str]:
    inner = width - 2
    return [
        _rule("-", width),
        "|" + " Processes:".ljust(inner) + "|",
        *(f"|{head}|" for head in layout.process_heads),
        "|" + "=" * inner + "|",
        "|" + "  No running processes found".ljust(inner) + "|",
        _rule("-", width),
    ]
