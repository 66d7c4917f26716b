"""Every nvidia-smi fixture parses to what its row in SOURCES.md says.

The walk covers ``tests/fixtures/nvidia-smi/`` and, when the checkout sits next to it,
``../shared/fixtures/nvidia-smi/`` (the union by file name; the shared copy wins). A new fixture
is covered as soon as it is dropped there and documented in SOURCES.md: the expected driver, CUDA
version, GPU count and name come from its row, and the failure kind of an ``err_*`` file from the
words of its name (``err_nvml-version-mismatch_...`` -> ``nvml-mismatch``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from labtorch.facts.nvidia_smi import (
    ERR_NAME,
    SmiFailure,
    SmiFailureKind,
    SmiReport,
    decode_output,
    parse_nvidia_smi,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURE_DIRS = (
    REPO / "tests" / "fixtures" / "nvidia-smi",
    REPO.parent / "shared" / "fixtures" / "nvidia-smi",
)
SOURCES = "SOURCES.md"


def fixture_files() -> dict[str, Path]:
    files: dict[str, Path] = {}
    for directory in FIXTURE_DIRS:
        if directory.is_dir():
            files.update({path.name: path for path in directory.iterdir() if path.is_file()})
    return files


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row; ``\\|`` inside a cell is not a separator."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def source_rows() -> dict[str, dict[str, str]]:
    """SOURCES.md rows by file name, each a mapping from column title to cell text."""
    rows: dict[str, dict[str, str]] = {}
    for directory in FIXTURE_DIRS:
        path = directory / SOURCES
        if not path.is_file():
            continue
        header: list[str] | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("|"):
                header = None
            elif header is None:
                header = _cells(line)
            elif not re.fullmatch(r"[\s|:-]+", line):
                row = dict(zip(header, _cells(line), strict=False))
                rows[row["File"].strip("`")] = row
    return rows


FILES = fixture_files()
ROWS = source_rows()


@dataclass(frozen=True)
class Expected:
    """What a fixture's SOURCES.md row promises."""

    driver: str | None
    smi_version: str | None
    cuda: str | None
    gpu_count: int
    gpu_name: str | None
    mig_enabled: bool
    has_error_gpu: bool
    failure: SmiFailureKind | None


def expected(name: str, row: dict[str, str]) -> Expected:
    gpus, command = row["GPU(s)"], row["Command"]
    driver, smi_version = _driver(row["Driver"])
    no_inventory = "--version" in command
    return Expected(
        driver=driver,
        smi_version=smi_version,
        cuda=_cuda(row["CUDA shown"]),
        gpu_count=0 if no_inventory else _gpu_count(gpus),
        gpu_name=None if no_inventory else _gpu_name(gpus),
        mig_enabled=bool(re.search(r"MIG (?:enabled|on)\b|\d+ MIG devices", gpus)),
        has_error_gpu="error state" in gpus,
        failure=_failure(name, command),
    )


def _driver(cell: str) -> tuple[str | None, str | None]:
    """(driver, nvidia-smi version) from "570.133.20", "KMD 610.57.04",
    "NVIDIA-SMI 530.47 / Driver 531.68", "unknown ..." or "—"."""
    wsl = re.match(r"NVIDIA-SMI (\S+) / Driver (\S+)", cell)
    if wsl:
        return wsl.group(2), wsl.group(1)
    plain = re.match(r"(?:KMD )?(\d+(?:\.\d+)+)", cell)
    return (plain.group(1) if plain else None), None


def _cuda(cell: str) -> str | None:
    match = re.match(r"(?:CUDA UMD )?(\d+\.\d+)", cell)
    return match.group(1) if match else None


def _gpu_count(cell: str) -> int:
    """From "8x ...", "(1 GPU, ...)"; one GPU otherwise (MIG devices are not GPUs)."""
    match = re.match(r"(\d+)x ", cell) or re.search(r"\((\d+) GPUs?[,)]", cell)
    return int(match.group(1)) if match else 1


def _gpu_name(cell: str) -> str:
    """The name as nvidia-smi shows it: a 'shown as "..."' note, a quoted name, or the lead text."""
    shown = re.search(r'shown as "([^"]+)"', cell)
    if shown:
        return shown.group(1)
    text = re.sub(r"^\d+x ", "", cell)
    quoted = re.match(r'"([^"]+)"', text)
    if quoted:
        return quoted.group(1)
    return re.split(r" \(|, | \+ |; ", text)[0].strip()


def _failure(name: str, command: str) -> SmiFailureKind | None:
    if name.startswith("err_"):
        return failure_kind_from_name(name)
    invoked = re.search(r"`([^`]*)`", command)
    words = invoked.group(1).split()[1:] if invoked else []
    # A sub-command (dmon, pmon, topo, ...) prints no GPU inventory.
    return SmiFailureKind.UNRECOGNISED if words and not words[0].startswith("-") else None


def failure_kind_from_name(name: str) -> SmiFailureKind:
    """The one kind whose words all appear in the file name; "unsupported" is "not supported"."""
    words = set(re.split(r"[-_.]", name.removeprefix("err_")))
    if "unsupported" in words:
        words |= {"not", "supported"}
    kinds = [kind for kind in SmiFailureKind if set(kind.value.split("-")) <= words]
    assert len(kinds) == 1, (
        f"{name}: name an err_ fixture after one failure kind "
        f"({', '.join(kind.value for kind in SmiFailureKind)}); matches {kinds}"
    )
    return kinds[0]


def name_matches(shown: str, expected_name: str) -> bool:
    """Equal, or a name the table cut short with "..." that starts the expected one."""
    if shown == expected_name:
        return True
    return shown.endswith("...") and expected_name.startswith(shown.removesuffix("..."))


@pytest.mark.parametrize("name", sorted(set(FILES) - {SOURCES}))
def test_fixture_matches_sources(name: str) -> None:
    assert name in ROWS, f"{name} is not documented in {SOURCES}: add a row for it"
    want = expected(name, ROWS[name])
    raw = FILES[name].read_bytes()
    result = parse_nvidia_smi(raw)
    if want.failure is not None:
        assert isinstance(result, SmiFailure), f"expected a {want.failure.value} failure"
        assert result.kind is want.failure
        assert result.meaning
        return
    assert isinstance(result, SmiReport), result
    check_report(result, want, decode_output(raw))


def check_report(report: SmiReport, want: Expected, text: str) -> None:
    # SOURCES.md gives the host's driver even where the output does not show it (-L, a CSV
    # without driver_version); a parser can only find a version that is in the text.
    driver = want.driver if want.driver and want.driver in text else None
    assert report.driver_version == driver
    assert report.cuda_version == want.cuda
    if want.smi_version is not None:
        assert report.smi_version == want.smi_version
    assert len(report.gpus) == want.gpu_count
    names = [gpu.name for gpu in report.gpus if gpu.name != ERR_NAME]
    if want.gpu_name is not None:
        assert names, "no readable GPU name"
        assert all(name_matches(name, want.gpu_name) for name in names), names
    assert (ERR_NAME in [gpu.name for gpu in report.gpus]) == want.has_error_gpu
    if want.mig_enabled:
        assert all(gpu.mig_enabled for gpu in report.gpus)


def test_every_documented_fixture_exists() -> None:
    missing = sorted(set(ROWS) - set(FILES))
    assert not missing, f"listed in {SOURCES} but not present: {missing}"


def test_local_copy_is_present() -> None:
    # CI runs on a clean clone, where ../shared does not exist.
    assert (FIXTURE_DIRS[0] / SOURCES).is_file()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("err_command-not-found_bash.txt", SmiFailureKind.COMMAND_NOT_FOUND),
        ("err_nvml-version-mismatch-legacy_470.txt", SmiFailureKind.NVML_MISMATCH),
        ("err_topo-m-unsupported-win_591.86.txt", SmiFailureKind.NOT_SUPPORTED),
        ("err_no-devices-found_rtx5090.txt", SmiFailureKind.NO_DEVICES),
        ("err_device-handle-unknown-error_2015.txt", SmiFailureKind.DEVICE_HANDLE),
        ("err_driver-not-loaded-modprobe-fatal.txt", SmiFailureKind.DRIVER_NOT_LOADED),
    ],
)
def test_failure_kind_from_name(name: str, kind: SmiFailureKind) -> None:
    assert failure_kind_from_name(name) is kind


@pytest.mark.parametrize(
    ("cell", "driver", "smi"),
    [
        ("570.133.20", "570.133.20", None),
        ("KMD 610.57.04", "610.57.04", None),
        ("NVIDIA-SMI 530.47 / Driver 531.68", "531.68", "530.47"),
        ("unknown (no `driver_version` element)", None, None),
        ("—", None, None),
        ("510.47.03 (same host as the XML)", "510.47.03", None),
    ],
)
def test_sources_driver_cell(cell: str, driver: str | None, smi: str | None) -> None:
    assert _driver(cell) == (driver, smi)


@pytest.mark.parametrize(
    ("cell", "count", "name"),
    [
        ("GRID K520 (1 GPU, AWS g2-class VM)", 1, "GRID K520"),
        ("2x GeForce RTX 2080 Ti", 2, "GeForce RTX 2080 Ti"),
        ('8x GeForce GTX 1080 Ti (shown as "GeForce GTX 108...")', 8, "GeForce GTX 108..."),
        ('"Graphics Device" (GTX 1660 Ti, too new for 418.43 to name)', 1, "Graphics Device"),
        ("NVIDIA H100 80GB HBM3, MIG on (4 GPU instances: 3g.40gb, 2g.20gb)", 1,
         "NVIDIA H100 80GB HBM3"),
        ("8x NVIDIA A40; GPU 4 is in an error state", 8, "NVIDIA A40"),
        ("NVIDIA H100 80GB HBM3 + 4 MIG devices", 1, "NVIDIA H100 80GB HBM3"),
    ],
)  # fmt: skip
def test_sources_gpu_cell(cell: str, count: int, name: str) -> None:
    assert (_gpu_count(cell), _gpu_name(cell)) == (count, name)
