"""Reading what ``nvidia-smi`` prints into data: driver, highest CUDA the driver supports, GPUs.

Pure functions over the captured output (bytes or text); running the command is someone else's
job. :func:`parse_nvidia_smi` recognises the output format by itself and returns an
:class:`SmiReport`, or an :class:`SmiFailure` that says in plain words what went wrong on the host.
One parser per format (``-q -x``, ``--query-gpu``, the default table, ``-q``, ``-L``,
``--version``) can also be called directly; each raises ``ValueError`` only for text that is not
of its format at all, and reads missing or ``N/A`` values as ``None``.

Per GPU, the compute capability is the one nvidia-smi reported (``compute_cap``) or else the one
the GPU catalog gives for its name (:mod:`labtorch.data.gpu_catalog`). A GPU that the default table
shows as ``ERR!`` is still a GPU: it keeps its index, memory and the name ``"ERR!"``, and its
capability is unknown.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import partial

from labtorch.data.gpu_catalog import capability_for_name
from labtorch.data.gpus import ComputeCapability, Gpu

ERR_NAME = "ERR!"
"""The name nvidia-smi's table shows for a GPU it cannot read (kept as the GPU's name)."""


class SmiFailureKind(str, Enum):
    """Why nvidia-smi gave no GPU inventory."""

    COMMAND_NOT_FOUND = "command-not-found"
    DRIVER_NOT_LOADED = "driver-not-loaded"
    NVML_MISMATCH = "nvml-mismatch"
    NO_DEVICES = "no-devices"
    DEVICE_HANDLE = "device-handle"
    NOT_SUPPORTED = "not-supported"
    UNRECOGNISED = "unrecognised"


@dataclass(frozen=True)
class SmiFailure:
    """nvidia-smi output that carries no GPU inventory, with what it means for a lab admin."""

    kind: SmiFailureKind
    meaning: str
    detail: str


@dataclass(frozen=True)
class SmiReport:
    """What one nvidia-smi output says about the host.

    ``driver_version`` is the kernel driver (the KMD version from 610 on; under WSL the Windows
    host driver); ``cuda_version`` is the newest CUDA that driver supports, not an installed
    toolkit; ``smi_version`` is nvidia-smi's own version where the output shows it.
    """

    driver_version: str | None
    cuda_version: str | None
    gpus: tuple[Gpu, ...]
    output_format: str
    smi_version: str | None = None


# --- decoding ------------------------------------------------------------------------------------

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def decode_output(raw: bytes | str) -> str:
    """Plain text with ``\\n`` line ends from whatever the capture gave.

    Handles UTF-16 (Windows PowerShell redirection, with or without a BOM), a UTF-8 BOM, CRLF and
    terminal escape codes (610's Windows nvidia-smi underlines some headers).
    """
    text = _decode_bytes(raw) if isinstance(raw, bytes) else raw
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return _ANSI_ESCAPE.sub("", text)


def _decode_bytes(raw: bytes) -> str:
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16", errors="replace")
    # ASCII text in UTF-16 without a BOM has a NUL in every other byte.
    if len(raw) >= 2 and raw[0] and not raw[1]:
        return raw.decode("utf-16-le", errors="replace")
    if len(raw) >= 2 and not raw[0] and raw[1]:
        return raw.decode("utf-16-be", errors="replace")
    return raw.decode("utf-8", errors="replace")


# --- failures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _FailureRule:
    kind: SmiFailureKind
    pattern: re.Pattern[str]
    meaning: str
    context: re.Pattern[str] | None = None


# Checked in this order: the first rule that matches a line decides the kind.
_FAILURE_RULES = (
    _FailureRule(
        SmiFailureKind.NVML_MISMATCH,
        re.compile(r"Failed to initialize NVML: Driver/library version mismatch"),
        "The NVIDIA driver was upgraded but the host was not rebooted: the old kernel module is "
        "still loaded and does not match the new user-space driver library (NVML). Reboot the "
        "host to load the new kernel module (or unload and reload the nvidia kernel modules), "
        "then run nvidia-smi again.",
        context=re.compile(r"NVML library version"),
    ),
    _FailureRule(
        SmiFailureKind.DRIVER_NOT_LOADED,
        re.compile(
            r"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"
            r"|couldn't find libnvidia-ml"
        ),
        "nvidia-smi is installed but cannot reach the NVIDIA kernel driver: the driver module is "
        "not loaded. This usually follows a kernel upgrade for which the driver module was not "
        "rebuilt (DKMS), or an incomplete driver install. Install or rebuild the driver for the "
        "running kernel, then load it (modprobe nvidia) or reboot.",
        context=re.compile(r"modprobe|Module nvidia"),
    ),
    _FailureRule(
        SmiFailureKind.DEVICE_HANDLE,
        re.compile(r"Unable to determine the device handle for GPU"),
        "The driver sees a GPU at this PCI address but cannot open it: the GPU is in a bad state "
        "(overheating, fallen off the bus, power or hardware fault). Check the kernel log for Xid "
        "errors and check cooling and power; a reboot may bring it back, and a GPU that keeps "
        "failing needs service.",
    ),
    _FailureRule(
        SmiFailureKind.NO_DEVICES,
        re.compile(r"No devices were found"),
        "The NVIDIA driver is loaded but found no usable GPU: the GPU failed to initialise (see "
        "the kernel log for NVRM errors; e.g. a BIOS setting such as Resizable BAR or Above 4G "
        "decoding, or a GPU too new for this driver), or no GPU is passed through to this VM or "
        "container. Until this is fixed the host can only run the CPU build of PyTorch.",
    ),
    _FailureRule(
        SmiFailureKind.COMMAND_NOT_FOUND,
        re.compile(
            r"nvidia-smi.*(?:command not found|: not found|not recognized"
            r"|executable file not found|No such file or directory)"
        ),
        "nvidia-smi is not installed (or not on the PATH), so this host has no NVIDIA driver "
        "utilities; in a container, the NVIDIA container runtime did not mount them. Install the "
        "NVIDIA driver (or start the container with GPU access) before installing a CUDA build "
        "of PyTorch; without it only the CPU build can run.",
    ),
    _FailureRule(
        SmiFailureKind.NOT_SUPPORTED,
        re.compile(
            r"^ERROR: Option\b|Please run 'nvidia-smi -h'|\b(?:is|are) not supported\b"
            r"|^Invalid combination of input arguments"
        ),
        "This nvidia-smi does not support the requested sub-command or option on this platform "
        "or driver (for example `nvidia-smi topo -m` on Windows). It says nothing about the GPUs; "
        "ask with plain `nvidia-smi` or `nvidia-smi --query-gpu` instead.",
    ),
)

_UNRECOGNISED_MEANING = (
    "This is not output labtorch can read a GPU inventory from, nor a known nvidia-smi error "
    "(monitoring output such as `nvidia-smi dmon` lists no GPUs). Run plain `nvidia-smi` or "
    "`nvidia-smi -q -x` on the host and check what it prints."
)


def classify_failure(text: str) -> SmiFailure | None:
    """The known nvidia-smi (or shell) error in ``text``, or ``None`` if there is none."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for rule in _FAILURE_RULES:
        if any(rule.pattern.search(line) for line in lines):
            return SmiFailure(rule.kind, rule.meaning, _failure_detail(rule, lines))
    return None


def _failure_detail(rule: _FailureRule, lines: list[str]) -> str:
    return "\n".join(
        line
        for line in lines
        if rule.pattern.search(line) or (rule.context is not None and rule.context.search(line))
    )


def _unrecognised(detail: str) -> SmiFailure:
    return SmiFailure(SmiFailureKind.UNRECOGNISED, _UNRECOGNISED_MEANING, detail)


# --- values ------------------------------------------------------------------------------------

_VERSION = re.compile(r"(\d+(?:\.\d+)+)\b")
_MIB = re.compile(r"(\d+)(?:\s*MiB)?")
# Words nvidia-smi prints instead of a value; CSV puts every such word in brackets.
_NO_VALUE = {
    "",
    "n/a",
    "not supported",
    "not available",
    "unknown error",
    "requested functionality has been deprecated",
}


def _value(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if text.lower() in _NO_VALUE or (text.startswith("[") and text.endswith("]")):
        return None
    return text


def _version(text: str | None) -> str | None:
    """A dotted version at the start of ``text`` (``"610.57.04 [Deprecated; ...]"`` included)."""
    match = _VERSION.match(text.strip()) if text else None
    return match.group(1) if match else None


def _mib(text: str | None) -> int | None:
    value = _value(text)
    match = _MIB.fullmatch(value) if value else None
    return int(match.group(1)) if match else None


def _mig(text: str | None) -> bool | None:
    return {"enabled": True, "disabled": False}.get((_value(text) or "").lower())


def _capability(text: str | None) -> ComputeCapability | None:
    value = _value(text)
    try:
        return ComputeCapability.parse(value) if value else None
    except ValueError:
        return None


def _gpu(
    index: int,
    name: str | None,
    uuid: str | None,
    memory_mib: int | None,
    reported: ComputeCapability | None,
    mig_enabled: bool | None,
) -> Gpu:
    """One GPU, its capability as reported or else from the catalog."""
    name = name or ""
    if reported is not None:
        capability, source = reported, "reported"
    else:
        capability = capability_for_name(name) if name else None
        source = "catalog" if capability is not None else None
    return Gpu(index, name, _value(uuid), memory_mib, capability, source, mig_enabled)


# --- XML (nvidia-smi -q -x) ----------------------------------------------------------------------

# The DTD (a SYSTEM reference or the whole DTD inline with --dtd) is not needed to read the data.
_DOCTYPE = re.compile(r"<!DOCTYPE[^\[>]*(?:\[.*?\]\s*)?>", re.DOTALL)


def parse_xml(text: str) -> SmiReport:
    """Read ``nvidia-smi -q -x`` output (any DTD version, inline DTD or none).

    GPUs are numbered in the order listed, which is nvidia-smi's index order.
    """
    try:
        root = ET.fromstring(_DOCTYPE.sub("", decode_output(text), count=1).strip())
    except ET.ParseError as exc:
        raise ValueError(f"not nvidia-smi XML output: {exc}") from exc
    if root.tag != "nvidia_smi_log":
        raise ValueError(f"not nvidia-smi XML output: root element is <{root.tag}>")
    # Driver 610 renamed the driver and CUDA versions (KMD / CUDA UMD); the new names win.
    return SmiReport(
        driver_version=_version(root.findtext("kmd_version"))
        or _version(root.findtext("driver_version")),
        cuda_version=_version(root.findtext("cuda_umd_version"))
        or _version(root.findtext("cuda_version")),
        gpus=tuple(_xml_gpu(index, gpu) for index, gpu in enumerate(root.findall("gpu"))),
        output_format="xml",
    )


def _xml_gpu(index: int, element: ET.Element) -> Gpu:
    return _gpu(
        index,
        _value(element.findtext("product_name")),
        element.findtext("uuid"),
        _mib(element.findtext("fb_memory_usage/total")),
        _capability(element.findtext("compute_cap")),
        _mig(element.findtext("mig_mode/current_mig")),
    )


# --- CSV (nvidia-smi --query-gpu=... --format=csv) -----------------------------------------------

_CSV_FIELD = re.compile(r"[a-z_][a-z0-9_.]*")
_CSV_UNIT = re.compile(r"\s*\[[^\]]*\]$")
_CSV_KNOWN_FIELDS = {"name", "uuid", "index", "count", "serial", "pstate", "timestamp"}


def parse_csv(text: str, *, fields: Sequence[str] | None = None) -> SmiReport:
    """Read ``--query-gpu`` CSV output, one GPU per row.

    With a header row (``--format=csv``) the columns are known; with ``noheader`` pass ``fields``,
    the query fields in the order they were asked for. ``nounits`` values are read too.
    """
    rows = [row for row in csv.reader(io.StringIO(decode_output(text)), skipinitialspace=True)]
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError("empty CSV output")
    names, data = _csv_columns(rows, fields)
    for number, row in enumerate(data, start=1):
        if len(row) != len(names):
            raise ValueError(f"CSV row {number} has {len(row)} values for {len(names)} fields")
    records = [dict(zip(names, row, strict=True)) for row in data]
    first = records[0] if records else {}
    return SmiReport(
        driver_version=_version(first.get("kmd_version")) or _version(first.get("driver_version")),
        cuda_version=None,
        gpus=tuple(_csv_gpu(position, record) for position, record in enumerate(records)),
        output_format="csv",
    )


def _csv_columns(
    rows: list[list[str]], fields: Sequence[str] | None
) -> tuple[list[str], list[list[str]]]:
    """The field names of the columns, and the data rows."""
    header = [_csv_field_name(cell) for cell in rows[0]]
    if fields is not None:
        names = [_csv_field_name(field) for field in fields]
        return names, rows[1:] if header == names else rows
    if _is_csv_header(rows[0]):
        return header, rows[1:]
    raise ValueError(
        "CSV output without a header row: pass fields= with the --query-gpu fields in order"
    )


def _csv_field_name(cell: str) -> str:
    """``"memory.total [MiB]"`` -> ``"memory.total"``."""
    return _CSV_UNIT.sub("", cell.strip()).lower()


def _is_csv_header(row: list[str]) -> bool:
    names = [_csv_field_name(cell) for cell in row]
    return all(_CSV_FIELD.fullmatch(name) for name in names) and any(
        name in _CSV_KNOWN_FIELDS or "." in name or "_" in name for name in names
    )


def _csv_gpu(position: int, record: dict[str, str]) -> Gpu:
    index = _value(record.get("index"))
    return _gpu(
        int(index) if index and index.isdigit() else position,
        _value(record.get("name") or record.get("gpu_name")),
        record.get("uuid") or record.get("gpu_uuid"),
        _mib(record.get("memory.total")),
        _capability(record.get("compute_cap")),
        _mig(record.get("mig.mode.current")),
    )


# --- the default table (plain nvidia-smi) --------------------------------------------------------

_TABLE_HEADER = re.compile(r"^\|\s*NVIDIA-SMI\s+(?P<smi>\S+)(?P<rest>.*)$", re.MULTILINE)
_TABLE_DRIVER = re.compile(r"(?:KMD|Driver) Version:\s*(\S+)")
_TABLE_CUDA = re.compile(r"CUDA (?:UMD )?Version:\s*(\S+)")
_TABLE_GPU_CELL = re.compile(r"^\s*(?P<index>\d+)\s+(?P<name>.*?)\s+\S+\s*$")
_TABLE_MEMORY = re.compile(r"(\d+)MiB\s*/\s*(\d+)MiB")


def parse_table(text: str) -> SmiReport:
    """Read the default ``nvidia-smi`` table, from the 79-column layout of the 3xx drivers on.

    Tables show no UUIDs. Names may be cut short with "..."; the catalog resolves them where only
    one capability fits. A GPU row of ``ERR!`` values is kept as a GPU named ``"ERR!"``.
    """
    text = decode_output(text)
    header = _TABLE_HEADER.search(text)
    if header is None:
        raise ValueError("not an nvidia-smi table: no '| NVIDIA-SMI ...' header line")
    rest = header.group("rest")
    lines = text[header.end() :].splitlines()
    return SmiReport(
        driver_version=_version(_first_group(_TABLE_DRIVER, rest)),
        cuda_version=_version(_first_group(_TABLE_CUDA, rest)),
        gpus=tuple(_table_gpus(lines)),
        output_format="table",
        smi_version=_version(header.group("smi")),
    )


def _first_group(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None


def _table_gpus(lines: list[str]) -> Iterator[Gpu]:
    separator = next((n for n, line in enumerate(lines) if line.startswith("|=")), None)
    if separator is None:
        return
    has_mig_column = any("MIG M." in line for line in lines[:separator])
    for block in _table_gpu_blocks(lines[separator + 1 :]):
        gpu = _table_gpu(block, has_mig_column)
        if gpu is not None:
            yield gpu


def _table_gpu_blocks(lines: list[str]) -> Iterator[list[list[str]]]:
    """The cells of each GPU's rows, up to the end of the GPU box."""
    block: list[list[str]] = []
    for line in lines:
        if line.startswith("+"):
            if block:
                yield block
            block = []
            continue
        if not line.startswith("|") or "Processes:" in line or "MIG devices:" in line:
            break
        block.append(line.strip().strip("|").split("|"))
    if block:
        yield block


def _table_gpu(block: list[list[str]], has_mig_column: bool) -> Gpu | None:
    first = _TABLE_GPU_CELL.match(block[0][0])
    if first is None:
        return None
    memory = _TABLE_MEMORY.search(block[1][1]) if len(block) > 1 and len(block[1]) > 1 else None
    mig_cells = block[2] if has_mig_column and len(block) > 2 else []
    return _gpu(
        int(first.group("index")),
        first.group("name"),
        None,
        int(memory.group(2)) if memory else None,
        None,
        _mig(mig_cells[2]) if len(mig_cells) > 2 else None,
    )


# --- nvidia-smi -q -----------------------------------------------------------------------------

_QUERY_LINE = re.compile(r"^(?P<key>[^:]*?)\s*:(?:\s(?P<value>.*))?$")
_QUERY_GPU = re.compile(r"^GPU [0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]$")
_QUERY_CAPABILITY_KEYS = (("CUDA Compute Capability",), ("Compute Capability",))


def parse_query(text: str) -> SmiReport:
    """Read ``nvidia-smi -q`` (the indented text report); GPUs are numbered in listed order."""
    text = decode_output(text)
    if "NVSMI LOG" not in text:
        raise ValueError("not nvidia-smi -q output: no 'NVSMI LOG' banner")
    top: dict[str, str | None] = {}
    gpus: list[dict[tuple[str, ...], str | None]] = []
    for path, value in _query_entries(text):
        if len(path) == 1 and value is None and _QUERY_GPU.match(path[0]):
            gpus.append({})
        elif len(path) == 1:
            top.setdefault(path[0], value)
        elif gpus and _QUERY_GPU.match(path[0]):
            gpus[-1].setdefault(path[1:], value)
    return SmiReport(
        driver_version=_version(top.get("KMD Version")) or _version(top.get("Driver Version")),
        cuda_version=_version(top.get("CUDA UMD Version")) or _version(top.get("CUDA Version")),
        gpus=tuple(_query_gpu(index, fields) for index, fields in enumerate(gpus)),
        output_format="query",
    )


def _query_entries(text: str) -> Iterator[tuple[tuple[str, ...], str | None]]:
    """Each ``key : value`` line with the section names above it; sections have value None."""
    sections: list[tuple[int, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("="):
            continue
        indent = len(line) - len(line.lstrip(" "))
        while sections and sections[-1][0] >= indent:
            sections.pop()
        match = _QUERY_LINE.match(line.strip())
        key = match.group("key").strip() if match else line.strip()
        value = match.group("value") if match else None
        yield (*(name for _, name in sections), key), value
        if value is None:
            sections.append((indent, key))


def _query_gpu(index: int, fields: dict[tuple[str, ...], str | None]) -> Gpu:
    reported = next(
        (_capability(fields[key]) for key in _QUERY_CAPABILITY_KEYS if key in fields), None
    )
    return _gpu(
        index,
        _value(fields.get(("Product Name",))),
        fields.get(("GPU UUID",)),
        _mib(fields.get(("FB Memory Usage", "Total"))),
        reported,
        _mig(fields.get(("MIG Mode", "Current"))),
    )


# --- nvidia-smi -L -----------------------------------------------------------------------------

_LIST_GPU = re.compile(r"^GPU (?P<index>\d+): (?P<name>.*?)(?: \(UUID: (?P<uuid>[^)]*)\))?$")
_LIST_MIG = re.compile(r"^\s+MIG\b")


def parse_list(text: str) -> SmiReport:
    """Read ``nvidia-smi -L``: one line per GPU, its MIG devices indented below it.

    ``mig_enabled`` is True for a GPU with MIG devices listed, else unknown (``-L`` does not say).
    """
    gpu_lines: list[re.Match[str]] = []
    has_mig_devices: list[bool] = []
    for line in decode_output(text).splitlines():
        match = _LIST_GPU.match(line.rstrip())
        if match:
            gpu_lines.append(match)
            has_mig_devices.append(False)
        elif gpu_lines and _LIST_MIG.match(line):
            has_mig_devices[-1] = True
    if not gpu_lines:
        raise ValueError("not nvidia-smi -L output: no 'GPU <n>: <name>' line")
    gpus = (
        _gpu(int(match["index"]), match["name"], match["uuid"], None, None, mig or None)
        for match, mig in zip(gpu_lines, has_mig_devices, strict=True)
    )
    return SmiReport(None, None, tuple(gpus), "list")


# --- nvidia-smi --version ----------------------------------------------------------------------


def parse_version(text: str) -> SmiReport:
    """Read ``nvidia-smi --version``: versions only, no GPUs."""
    keys = {}
    for line in decode_output(text).splitlines():
        key, colon, value = line.partition(":")
        if colon:
            keys[key.strip().lower()] = value.strip()
    if "nvidia-smi version" not in keys:
        raise ValueError("not nvidia-smi --version output: no 'NVIDIA-SMI version' line")
    return SmiReport(
        driver_version=_version(keys.get("kmd version")) or _version(keys.get("driver version")),
        cuda_version=_version(keys.get("cuda umd version")) or _version(keys.get("cuda version")),
        gpus=(),
        output_format="version",
        smi_version=_version(keys["nvidia-smi version"]),
    )


# --- any output ----------------------------------------------------------------------------------


def parse_nvidia_smi(
    raw: bytes | str, *, fields: Sequence[str] | None = None
) -> SmiReport | SmiFailure:
    """Read any nvidia-smi output, recognising its format; a failure says what went wrong.

    ``fields`` is for ``--query-gpu`` output printed with ``noheader``: the query fields in order.
    """
    text = decode_output(raw)
    parser = _format_parser(text)
    if parser is None:
        failure = classify_failure(text)
        if failure is not None:
            return failure
        if fields is None and not _starts_with_csv_header(text):
            return _unrecognised(_head(text))
        parser = partial(parse_csv, fields=fields)
    try:
        return parser(text)
    except ValueError as exc:
        return _unrecognised(str(exc))


_FORMATS: tuple[tuple[re.Pattern[str], Callable[[str], SmiReport]], ...] = (
    (re.compile(r"\A\s*<(?:\?xml|!DOCTYPE nvidia_smi_log|nvidia_smi_log)"), parse_xml),
    (re.compile(r"^=+NVSMI LOG=+$", re.MULTILINE), parse_query),
    (_TABLE_HEADER, parse_table),
    (re.compile(r"^NVIDIA-SMI version\s*:", re.MULTILINE), parse_version),
    (re.compile(r"\A\s*GPU \d+: "), parse_list),
)


def _format_parser(text: str) -> Callable[[str], SmiReport] | None:
    return next((parser for marker, parser in _FORMATS if marker.search(text)), None)


def _starts_with_csv_header(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return _is_csv_header(next(csv.reader([first], skipinitialspace=True), []))


def _head(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[:lines])
