"""Unit tables for the nvidia-smi parsers, on real outputs (tests/fixtures) and small edge cases."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from labtorch.data.gpus import ComputeCapability
from labtorch.facts.nvidia_smi import (
    ERR_NAME,
    SmiFailure,
    SmiFailureKind,
    SmiReport,
    classify_failure,
    decode_output,
    parse_csv,
    parse_list,
    parse_nvidia_smi,
    parse_query,
    parse_table,
    parse_version,
    parse_xml,
)

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi"


def fixture(name: str) -> str:
    return decode_output((FIXTURES / name).read_bytes())


def report(raw: bytes | str, **kwargs: object) -> SmiReport:
    result = parse_nvidia_smi(raw, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, SmiReport), result
    return result


def cc(text: str | None) -> ComputeCapability | None:
    return ComputeCapability.parse(text) if text else None


# file, its format's parser, format, driver, CUDA, nvidia-smi version, number of GPUs
HEADERS = [
    ("xml_grid-k520_352.99.xml", parse_xml, "xml", "352.99", None, None, 1),
    ("xml_grid-k520-inline-dtd_352.99.xml", parse_xml, "xml", "352.99", None, None, 1),
    ("xml_rtx2080ti-x2_410.73.xml", parse_xml, "xml", "410.73", "10.0", None, 2),
    ("xml_gtx1660ti_418.43.xml", parse_xml, "xml", "418.43", "10.1", None, 1),
    ("xml_a100-sxm4-80gb-mig_535.54.03.xml", parse_xml, "xml", "535.54.03", "12.2", None, 1),
    ("xml_rtx3060_570.124.04.xml", parse_xml, "xml", "570.124.04", "12.8", None, 1),
    ("xml_gtx1070ti_unknown-trimmed.xml", parse_xml, "xml", None, None, None, 1),
    ("csv_tesla-p100_510.47.03.csv", parse_csv, "csv", None, None, None, 1),
    ("csv_h100-80gb-mig-allfields_590.48.01.csv", parse_csv, "csv", "590.48.01", None, None, 1),
    ("csv_rtx2080super-allfields_610.57.04.csv", parse_csv, "csv", "610.57.04", None, None, 1),
    ("csv_rtx2080super-win-allfields_591.86.csv", parse_csv, "csv", "591.86", None, None, 1),
    ("table_tesla-k80_384.90.txt", parse_table, "table", "384.90", None, "384.90", 1),
    ("table_gtx1080ti-x8_390.25.txt", parse_table, "table", "390.25", None, "390.25", 8),
    ("table_a100-sxm4-40gb-x8_450.102.04.txt", parse_table, "table", "450.102.04", "11.0",
     "450.102.04", 8),
    ("table_a40-x8-gpu-err_525.60.13.txt", parse_table, "table", "525.60.13", "12.0",
     "525.60.13", 8),
    ("table_rtx3070-wsl_530.47-531.68.txt", parse_table, "table", "531.68", "12.1", "530.47", 1),
    ("table_v100s-x8_535.171.04.txt", parse_table, "table", "535.171.04", "12.2",
     "535.171.04", 8),
    ("table_gtx1650-win-utf16_581.08.txt", parse_table, "table", "581.08", "13.0", "581.08", 1),
    ("table_rtx5060-win-bom_576.88.txt", parse_table, "table", "576.88", "12.9", "576.88", 1),
    ("table_gh200-x4-aarch64_590.48.01.txt", parse_table, "table", "590.48.01", "13.1",
     "590.48.01", 4),
    ("table_rtx2080super_610.57.04.txt", parse_table, "table", "610.57.04", "13.3",
     "610.57.04", 1),
    ("table_rtx2080super-win_610.62.txt", parse_table, "table", "610.62", "13.3", "610.62", 1),
    ("q_rtx4090-wsl_537.13.txt", parse_query, "query", "537.13", "12.2", None, 1),
    ("q_h100-80gb-mig_590.48.01.txt", parse_query, "query", "590.48.01", "13.1", None, 1),
    ("q_rtx2080super_610.57.04.txt", parse_query, "query", "610.57.04", "13.3", None, 1),
    ("list_h100-80gb-mig_590.48.01.txt", parse_list, "list", None, None, None, 1),
    ("version_l40s_595.80.txt", parse_version, "version", "595.80", "13.2", "595.80", 0),
    ("version_rtx2080super_610.57.04.txt", parse_version, "version", "610.57.04", "13.3",
     "610.57.04", 0),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "parser", "output_format", "driver", "cuda", "smi", "count"), HEADERS
)
def test_report_header(
    name: str,
    parser: Callable[[str], SmiReport],
    output_format: str,
    driver: str | None,
    cuda: str | None,
    smi: str | None,
    count: int,
) -> None:
    direct = parser(fixture(name))
    assert (direct.output_format, direct.driver_version, direct.cuda_version) == (
        output_format,
        driver,
        cuda,
    )
    assert direct.smi_version == smi
    assert len(direct.gpus) == count
    assert report((FIXTURES / name).read_bytes()) == direct


# file, GPU index, name, UUID, memory MiB, capability, its source, MIG mode
GPUS = [
    ("xml_grid-k520_352.99.xml", 0, "GRID K520", "GPU-cc96d6f4-7f66-e1fc-8179-a45dbd47664c",
     4095, "3.0", "catalog", None),
    ("xml_rtx2080ti-x2_410.73.xml", 1, "GeForce RTX 2080 Ti",
     "GPU-ef1d0068-5bfd-f1e4-7e79-ff35d71d44b8", 10989, "7.5", "catalog", None),
    ("xml_gtx1660ti_418.43.xml", 0, "Graphics Device", "GPU-304a277d-3545-63b8-3a36-dfde3c992989",
     5912, None, None, None),
    ("xml_quadro-p2200_450.80.02.xml", 0, "Quadro P2200",
     "GPU-4c049112-c7f5-5135-55da-7b4be79fb20b", 5058, "6.1", "catalog", None),
    ("xml_a100-sxm4-40gb-mig_510.47.03.xml", 0, "NVIDIA A100-SXM4-40GB",
     "GPU-27b94a00-ed54-5c24-b1fd-1054085de32a", 40960, "8.0", "catalog", True),
    ("xml_grid-p4-1q-vgpu-win_513.46.xml", 0, "GRID P4-1Q",
     "GPU-1b1ea7c7-1c4b-ed49-1c72-26c65f2dd207", 1024, "6.1", "catalog", None),
    ("xml_rtx-pro-6000-blackwell-maxq_590.44.01.xml", 0,
     "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
     "GPU-12345678-aaaa-bbbb-cccc-0123456789ab", 97887, "12.0", "catalog", None),
    ("xml_gtx1070ti_unknown-trimmed.xml", 0, "GeForce GTX 1070 Ti",
     "GPU-f9ba66fc-a7f5-94c5-da19-019ef2f9c665", 4096, "6.1", "catalog", None),
    ("csv_tesla-p100_510.47.03.csv", 0, "Tesla P100-PCIE-16GB",
     "GPU-ef1b2c9b-38d8-2090-2bd1-f567a3eb42a6", None, "6.0", "catalog", None),
    ("csv_h100-80gb-mig-allfields_590.48.01.csv", 0, "NVIDIA H100 80GB HBM3",
     "GPU-00000000-0000-0000-0000-000000000000", 81559, "9.0", "reported", True),
    ("csv_rtx2080super-win-allfields_591.86.csv", 0, "NVIDIA GeForce RTX 2080 SUPER",
     "GPU-00000000-0000-0000-0000-000000000000", 8192, "7.5", "reported", None),
    ("table_tesla-k80_384.90.txt", 0, "Tesla K80", None, 11439, "3.7", "catalog", None),
    ("table_gtx1080ti-x2-docker_440.82.txt", 1, "GeForce GTX 108...", None, 11178, "6.1",
     "catalog", None),
    ("table_a100-sxm4-40gb-x8_450.102.04.txt", 7, "A100-SXM4-40GB", None, 40537, "8.0",
     "catalog", False),
    ("table_geforce-name-truncated_525.147.05.txt", 0, "NVIDIA GeForce ...", None, 11264, None,
     None, None),
    ("table_a40-x8-gpu-err_525.60.13.txt", 3, "NVIDIA A40", None, 46068, "8.6", "catalog", None),
    ("table_a40-x8-gpu-err_525.60.13.txt", 4, ERR_NAME, None, 46068, None, None, None),
    ("table_h200-x8_570.133.20.txt", 7, "NVIDIA H200", None, 143771, "9.0", "catalog", False),
    ("table_h100-80gb-mig_590.48.01.txt", 0, "NVIDIA H100 80GB HBM3", None, 81559, "9.0",
     "catalog", True),
    ("table_gtx1650-win-utf16_581.08.txt", 0, "NVIDIA GeForce GTX 1650", None, 4096, "7.5",
     "catalog", None),
    ("table_rtx2080super-win_610.62.txt", 0, "NVIDIA GeForce RTX 2080 ...", None, 8192, "7.5",
     "catalog", None),
    ("table_rtx5060-win-bom_576.88.txt", 0, "NVIDIA GeForce RTX 5060", None, 8151, "12.0",
     "catalog", None),
    ("q_rtx4090-wsl_537.13.txt", 0, "NVIDIA GeForce RTX 4090",
     "GPU-e1f55e56-2016-d918-7dd5-7cd29c440e50", 24564, "8.9", "catalog", None),
    ("q_h100-80gb-mig_590.48.01.txt", 0, "NVIDIA H100 80GB HBM3",
     "GPU-00000000-0000-0000-0000-000000000000", 81559, "9.0", "catalog", True),
    ("q_rtx2080super_610.57.04.txt", 0, "NVIDIA GeForce RTX 2080 SUPER",
     "GPU-00000000-0000-0000-0000-000000000000", 8192, "7.5", "catalog", None),
    ("list_h100-80gb-mig_590.48.01.txt", 0, "NVIDIA H100 80GB HBM3",
     "GPU-00000000-0000-0000-0000-000000000000", None, "9.0", "catalog", True),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "index", "gpu_name", "uuid", "memory", "capability", "source", "mig"), GPUS
)
def test_gpu(
    name: str,
    index: int,
    gpu_name: str,
    uuid: str | None,
    memory: int | None,
    capability: str | None,
    source: str | None,
    mig: bool | None,
) -> None:
    gpu = next(gpu for gpu in report((FIXTURES / name).read_bytes()).gpus if gpu.index == index)
    assert (gpu.name, gpu.uuid, gpu.memory_mib) == (gpu_name, uuid, memory)
    assert (gpu.capability, gpu.capability_source, gpu.mig_enabled) == (cc(capability), source, mig)


def test_table_gpu_indices_in_order() -> None:
    gpus = report(fixture("table_a40-x8-gpu-err_525.60.13.txt")).gpus
    assert [gpu.index for gpu in gpus] == list(range(8))
    assert [gpu.name for gpu in gpus].count(ERR_NAME) == 1


def test_xml_reported_capability() -> None:
    xml = (
        "<?xml version='1.0'?><nvidia_smi_log><driver_version>999.1</driver_version>"
        "<gpu id='0'><product_name>Future GPU</product_name><compute_cap>13.0</compute_cap>"
        "</gpu></nvidia_smi_log>"
    )
    (gpu,) = parse_xml(xml).gpus
    assert (gpu.capability, gpu.capability_source) == (ComputeCapability(13, 0), "reported")


def test_query_reported_capability() -> None:
    text = (
        "==============NVSMI LOG==============\n"
        "Driver Version                 : 999.1\n"
        "GPU 00000000:01:00.0\n"
        "    Product Name               : Future GPU\n"
        "    CUDA Compute Capability    : 13.0\n"
    )
    (gpu,) = parse_query(text).gpus
    assert (gpu.capability, gpu.capability_source) == (ComputeCapability(13, 0), "reported")


# --- CSV -----------------------------------------------------------------------------------------

QUERY = ["index", "name", "uuid", "memory.total", "compute_cap", "mig.mode.current"]


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (  # --format=csv
            "index, name, uuid, memory.total [MiB], compute_cap, mig.mode.current\n"
            "0, NVIDIA A100-SXM4-40GB, GPU-a, 40960 MiB, 8.0, Enabled\n"
            "1, NVIDIA A100-SXM4-40GB, GPU-b, 40960 MiB, 8.0, Disabled\n",
            None,
        ),
        (  # --format=csv,nounits
            "index, name, uuid, memory.total [MiB], compute_cap, mig.mode.current\n"
            "0, NVIDIA A100-SXM4-40GB, GPU-a, 40960, 8.0, Enabled\n"
            "1, NVIDIA A100-SXM4-40GB, GPU-b, 40960, 8.0, Disabled\n",
            None,
        ),
        (  # --format=csv,noheader
            "0, NVIDIA A100-SXM4-40GB, GPU-a, 40960 MiB, 8.0, Enabled\n"
            "1, NVIDIA A100-SXM4-40GB, GPU-b, 40960 MiB, 8.0, Disabled\n",
            QUERY,
        ),
        (  # --format=csv,noheader,nounits, Windows line ends
            "0, NVIDIA A100-SXM4-40GB, GPU-a, 40960, 8.0, Enabled\r\n"
            "1, NVIDIA A100-SXM4-40GB, GPU-b, 40960, 8.0, Disabled\r\n",
            QUERY,
        ),
        (  # a header that matches the fields given is skipped
            "index, name, uuid, memory.total [MiB], compute_cap, mig.mode.current\n"
            "0, NVIDIA A100-SXM4-40GB, GPU-a, 40960 MiB, 8.0, Enabled\n"
            "1, NVIDIA A100-SXM4-40GB, GPU-b, 40960 MiB, 8.0, Disabled\n",
            QUERY,
        ),
    ],
)
def test_csv_layouts(text: str, fields: list[str] | None) -> None:
    parsed = parse_csv(text, fields=fields)
    assert parsed == report(text, fields=fields)
    assert [(gpu.index, gpu.uuid, gpu.memory_mib, gpu.mig_enabled) for gpu in parsed.gpus] == [
        (0, "GPU-a", 40960, True),
        (1, "GPU-b", 40960, False),
    ]
    assert {(gpu.capability, gpu.capability_source) for gpu in parsed.gpus} == {
        (ComputeCapability(8, 0), "reported")
    }


def test_csv_placeholders_fall_back_to_catalog() -> None:
    text = (
        "name, compute_cap, memory.total [MiB], mig.mode.current\nTesla T4, [N/A], [N/A], [N/A]\n"
    )
    (gpu,) = parse_csv(text).gpus
    assert (gpu.capability, gpu.capability_source) == (ComputeCapability(7, 5), "catalog")
    assert (gpu.memory_mib, gpu.mig_enabled, gpu.index) == (None, None, 0)


def test_csv_driver_only_query() -> None:
    parsed = report("570.133.20\n570.133.20\n", fields=["driver_version"])
    assert (parsed.driver_version, len(parsed.gpus)) == ("570.133.20", 2)


def test_csv_kmd_version_wins() -> None:
    text = "driver_version, kmd_version\n[Deprecated], 610.57.04\n"
    assert parse_csv(text).driver_version == "610.57.04"


# --- decoding ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "GPU 0\r\nline\r\n".encode("utf-16"),
        codecs.BOM_UTF16_LE + "GPU 0\r\nline\r\n".encode("utf-16-le"),
        codecs.BOM_UTF16_BE + "GPU 0\r\nline\r\n".encode("utf-16-be"),
        "GPU 0\r\nline\r\n".encode("utf-16-le"),
        "GPU 0\r\nline\r\n".encode("utf-16-be"),
        codecs.BOM_UTF8 + b"GPU 0\r\nline\r\n",
        b"GPU 0\nline\n",
        "\ufeffGPU 0\rline\r",
        "\x1b[4mGPU 0\x1b[0m\nline\n",
    ],
)
def test_decode_output(raw: bytes | str) -> None:
    assert decode_output(raw) == "GPU 0\nline\n"


def test_decode_utf16_fixture() -> None:
    raw = (FIXTURES / "table_gtx1650-win-utf16_581.08.txt").read_bytes()
    assert raw.startswith(codecs.BOM_UTF16_LE)
    text = decode_output(raw)
    assert "\r" not in text
    assert "| NVIDIA-SMI 581.08" in text.splitlines()[2]


# --- failures ------------------------------------------------------------------------------------

FAILURES = [
    ("err_command-not-found_bash.txt", SmiFailureKind.COMMAND_NOT_FOUND,
     "bash: nvidia-smi: command not found", "not installed"),
    ("err_driver-not-loaded.txt", SmiFailureKind.DRIVER_NOT_LOADED,
     "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
     "Make sure that the latest NVIDIA driver is installed and running.", "kernel upgrade"),
    ("err_driver-not-loaded-modprobe-fatal.txt", SmiFailureKind.DRIVER_NOT_LOADED,
     "modprobe: FATAL: Module nvidia not found.\n"
     "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
     "Make sure that the latest NVIDIA driver is installed and running.", "not loaded"),
    ("err_nvml-version-mismatch_570.124.txt", SmiFailureKind.NVML_MISMATCH,
     "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 570.124",
     "Reboot the host"),
    ("err_nvml-version-mismatch-legacy_470.txt", SmiFailureKind.NVML_MISMATCH,
     "Failed to initialize NVML: Driver/library version mismatch", "Reboot the host"),
    ("err_no-devices-found_rtx5090.txt", SmiFailureKind.NO_DEVICES, "No devices were found",
     "no usable GPU"),
    ("err_device-handle-unknown-error_2015.txt", SmiFailureKind.DEVICE_HANDLE,
     "Unable to determine the device handle for GPU 0000:0B:00.0: Unknown Error", "bad state"),
    ("err_device-handle-unknown-error_2024.txt", SmiFailureKind.DEVICE_HANDLE,
     "Unable to determine the device handle for GPU0000:07:00.0: Unknown Error", "bad state"),
    ("err_topo-m-unsupported-win_591.86.txt", SmiFailureKind.NOT_SUPPORTED,
     "ERROR: Option -m is missing its value. Please run 'nvidia-smi -h' for help.",
     "does not support"),
    ("dmon_h100-80gb-mig_590.48.01.txt", SmiFailureKind.UNRECOGNISED,
     "# gpu    pwr  gtemp  mtemp     sm    mem    enc    dec    jpg    ofa   mclk   pclk",
     "dmon"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kind", "detail", "meaning"), FAILURES)
def test_failure(name: str, kind: SmiFailureKind, detail: str, meaning: str) -> None:
    failure = parse_nvidia_smi((FIXTURES / name).read_bytes())
    assert isinstance(failure, SmiFailure)
    assert failure.kind is kind
    assert failure.detail.startswith(detail)
    assert meaning in failure.meaning
    if kind is not SmiFailureKind.UNRECOGNISED:
        assert classify_failure(fixture(name)) == failure


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("sh: 1: nvidia-smi: not found\n", SmiFailureKind.COMMAND_NOT_FOUND),
        (
            "'nvidia-smi' is not recognized as an internal or external command,\n"
            "operable program or batch file.\n",
            SmiFailureKind.COMMAND_NOT_FOUND,
        ),
        (
            'exec: "nvidia-smi": executable file not found in $PATH\n',
            SmiFailureKind.COMMAND_NOT_FOUND,
        ),
        (
            "NVIDIA-SMI couldn't find libnvidia-ml.so library in your system.\n",
            SmiFailureKind.DRIVER_NOT_LOADED,
        ),
    ],
)
def test_failure_variants(text: str, kind: SmiFailureKind) -> None:
    failure = classify_failure(text)
    assert failure is not None
    assert failure.kind is kind
    assert failure.detail == text.splitlines()[0]


def test_nvml_mismatch_says_reboot() -> None:
    failure = classify_failure("Failed to initialize NVML: Driver/library version mismatch\n")
    assert failure is not None
    assert "reboot" in failure.meaning.lower()
    assert "upgraded" in failure.meaning


@pytest.mark.parametrize(
    "name",
    ["table_a40-x8-gpu-err_525.60.13.txt", "q_rtx4090-wsl_537.13.txt", "version_l40s_595.80.txt"],
)
def test_reports_are_not_failures(name: str) -> None:
    assert classify_failure(fixture(name)) is None


def test_every_failure_kind_has_its_own_meaning() -> None:
    meanings = {
        parse_nvidia_smi((FIXTURES / name).read_bytes()).meaning  # type: ignore[union-attr]
        for name, *_ in FAILURES
    }
    assert len(meanings) == len(SmiFailureKind)


# --- malformed input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parser", "text", "message"),
    [
        (parse_xml, "not xml at all", "not nvidia-smi XML"),
        (parse_xml, "<?xml version='1.0'?><other/>", "root element is <other>"),
        (parse_xml, "<nvidia_smi_log><gpu>", "not nvidia-smi XML"),
        (parse_csv, "", "empty CSV"),
        (parse_csv, "Tesla T4, 15360 MiB\n", "without a header row"),
        (parse_csv, "name, uuid\nTesla T4\n", "row 1 has 1 values for 2 fields"),
        (parse_table, "No devices were found\n", "no '| NVIDIA-SMI ...' header"),
        (parse_query, "Product Name : Tesla T4\n", "no 'NVSMI LOG'"),
        (parse_list, "No devices were found\n", "no 'GPU <n>: <name>' line"),
        (parse_version, "CUDA Version : 12.2\n", "no 'NVIDIA-SMI version' line"),
    ],
)
def test_malformed(parser: Callable[[str], SmiReport], text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("|", r"\|")):
        parser(text)


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        # The XML parser's own message follows the prefix: matched as a pattern.
        ("<nvidia_smi_log><gpu>", r"not nvidia-smi XML output: no element found: line 1, .+"),
        ("", ""),
        ("hello world\n", "hello world"),
        ("Tesla T4, 15360 MiB\n", r"Tesla T4, 15360 MiB"),
        # Long output: its first 5 lines, stripped, are the detail.
        (
            "\n  line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n",
            "line 1\nline 2\nline 3\nline 4\nline 5",
        ),
    ],
)
def test_unreadable_output_is_an_unrecognised_failure(raw: str, detail: str) -> None:
    failure = parse_nvidia_smi(raw)
    assert isinstance(failure, SmiFailure)
    assert failure.kind is SmiFailureKind.UNRECOGNISED
    assert re.fullmatch(detail, failure.detail), failure.detail
    assert "Run plain `nvidia-smi` or `nvidia-smi -q -x` on the host" in failure.meaning
