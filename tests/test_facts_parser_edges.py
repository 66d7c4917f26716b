"""The facts parsers on the inputs the other tests do not give them: an OS or machine uname
does not list, damaged or truncated output, sections that are there but empty, a result line
that is not JSON. Each case is an input written out and the value it must read as."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from labtorch.data.gpus import ComputeCapability
from labtorch.facts.cache_host import (
    CacheHostState,
    parse_cache_host,
    parse_upstream_log,
    upstream_log_script,
)
from labtorch.facts.env_discovery import parse_audit, parse_envs
from labtorch.facts.env_history import (
    parse_rollback_state,
    parse_states,
    rollback_result,
    rollback_state_script,
)
from labtorch.facts.host_state import InstalledPackage, parse_dist_info, parse_host_state
from labtorch.facts.nvidia_smi import SmiFailure, SmiFailureKind, SmiReport
from labtorch.facts.platform import conda_platform, platform_machine
from labtorch.facts.probe_output import probe_result

A100_TABLE = (
    Path(__file__).parent / "fixtures" / "nvidia-smi" / "table_a100-sxm4-40gb_550.144.03.txt"
)

# ---- platform ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "machine", "platform"),
    [
        ("Linux", "x86_64", "linux-64"),
        ("Linux", "ARM64", "linux-aarch64"),
        # Pairs the table does not list fall back by OS, to its 64-bit x86 platform.
        ("Darwin", "ppc", "osx-64"),
        ("Windows", "ia64", "win-64"),
        ("CYGWIN_NT-10.0", "x86_64", "win-64"),
        ("MINGW64_NT-10.0-19045", "x86_64", "win-64"),
        ("MSYS_NT-10.0", "i686", "win-64"),
        ("win32", "x86", "win-64"),
        ("Linux", "ppc64le", "linux-64"),
        ("FreeBSD", "amd64", "linux-64"),
    ],
)
def test_conda_platform_falls_back_by_os(system, machine, platform) -> None:
    assert conda_platform(system, machine) == platform


@pytest.mark.parametrize(
    ("platform", "machine"),
    [
        ("linux-aarch64", "aarch64"),
        ("osx-arm64", "arm64"),
        ("win-64", "x86_64"),
        ("linux-ppc64le", "x86_64"),
    ],
)
def test_platform_machine_defaults_to_x86_64(platform, machine) -> None:
    assert platform_machine(platform) == machine


# ---- probe output -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "result"),
    [
        ([], None),
        (["Traceback (most recent call last):", "ImportError: x"], None),
        (
            ["noise", 'LABTORCH_PROBE {"prefix": "/e"}', 'LABTORCH_PROBE {"prefix": "/f"}'],
            {"prefix": "/e"},
        ),
    ],
)
def test_the_probe_result_is_the_first_marked_line(lines, result) -> None:
    assert probe_result(lines) == result


def test_a_probe_result_line_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"^unreadable probe output: Expecting ',' delimiter"):
        probe_result(['LABTORCH_PROBE {"prefix": "/e" "python": "3.11"}'])


# ---- the cache host ---------------------------------------------------------------------------


def test_cache_host_output_without_an_nginx_section_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^not labtorch cache host output \(no nginx section\)$"):
        parse_cache_host(["@@labtorch-cache apt-get", "/usr/bin/apt-get"])


def test_cache_host_lines_outside_a_section_and_blank_lines_are_ignored() -> None:
    lines = [
        "Warning: Permanently added 'cache.lab' to the list of known hosts.",
        "@@labtorch-cache nginx",
        "",
        "/usr/sbin/nginx",
        "@@labtorch-cache directories",
        "www-data 755 /var/cache/labtorch/conda forge",
        "   ",
        "@@labtorch-cache upstream-log",
        "12k",
    ]
    assert parse_cache_host(lines) == CacheHostState(
        nginx="/usr/sbin/nginx",
        apt_get=False,
        systemctl=False,
        nginx_user=False,
        config_sha256=None,
        unit_sha256=None,
        # The path is the rest of the line, spaces and all.
        directories={"/var/cache/labtorch/conda forge": ("www-data", "755")},
        active=False,
        enabled=False,
        # A size that is not a number of bytes reads as an empty log.
        upstream_log_size=0,
    )


@pytest.mark.parametrize(
    ("offset", "script"),
    [
        (0, "tail -c +1 /var/log/labtorch-cache/upstream.log 2>/dev/null; exit 0"),
        (1024, "tail -c +1025 /var/log/labtorch-cache/upstream.log 2>/dev/null; exit 0"),
    ],
)
def test_the_upstream_log_is_read_from_the_byte_after_the_offset(offset, script) -> None:
    assert upstream_log_script(offset) == script


def test_upstream_log_lines_that_are_not_requests_are_skipped() -> None:
    lines = [
        '"uri": "/cut/by/a/rotation", "status": 200}',
        '{"rank": 0, "uri": "/anaconda/cloud/conda-forge/noarch/repodata.json", "status": 200}',
        "[1, 2]",
        '{"rank": "0", "uri": "/a"}',
        '{"uri": "/no/rank"}',
        '{"rank": 1, "uri": "/fallback/torch.whl", "status": 404}',
    ]
    assert parse_upstream_log(lines) == [
        {"rank": 0, "uri": "/anaconda/cloud/conda-forge/noarch/repodata.json", "status": 200},
        {"rank": 1, "uri": "/fallback/torch.whl", "status": 404},
    ]


# ---- the audit's envs -------------------------------------------------------------------------


def test_an_env_whose_probe_printed_broken_json_keeps_the_error() -> None:
    lines = [
        "@@labtorch-env venv /opt/v",
        "@@labtorch-env-history 2",
        'LABTORCH_PROBE {"prefix": "/opt/v",',
    ]
    assert parse_envs(lines) == [
        {
            "prefix": "/opt/v",
            "kind": "venv",
            "probe": None,
            "error": "unreadable probe output: Expecting property name enclosed in double "
            "quotes: line 1 column 21 (char 20)",
            "history": 2,
        }
    ]


def test_lines_before_the_first_env_and_an_unreadable_history_count_are_ignored() -> None:
    lines = [
        "find: '/home/x': Permission denied",
        "@@labtorch-env conda /opt/conda/envs/my torch",
        "@@labtorch-env-history ls: cannot access",
        'LABTORCH_PROBE {"prefix": "/opt/conda/envs/my torch"}',
    ]
    assert parse_envs(lines) == [
        {
            "prefix": "/opt/conda/envs/my torch",
            "kind": "conda",
            "probe": {"prefix": "/opt/conda/envs/my torch"},
            "error": None,
            "history": 0,
        }
    ]


# ---- the env's history ------------------------------------------------------------------------


def test_history_lines_that_are_not_states_are_skipped_and_the_rest_ordered() -> None:
    lines = [
        '{"id": 3, "torch": "2.7.1"}',
        '{"id": 1, "torch": "2.3.1"',
        '{"id": "2", "torch": "2.5.1"}',
        "[4]",
        "",
        '{"id": 2, "torch": "2.5.1"}',
    ]
    assert parse_states(lines) == [{"id": 2, "torch": "2.5.1"}, {"id": 3, "torch": "2.7.1"}]


def test_a_rollback_read_without_the_history_marker_has_no_states() -> None:
    state, states = parse_rollback_state(["@@labtorch system", "Linux", '{"id": 1}'])
    assert (state.system, states) == ("Linux", [])


def test_a_rollback_read_that_is_no_host_state_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^not labtorch host state output \(no system section\)$"):
        parse_rollback_state(["@@labtorch-history", '{"id": 1}'])


@pytest.mark.parametrize(
    ("lines", "result"),
    [
        ([], None),
        (["labtorch: no state 7 recorded in /e (kept: 1)"], None),
        (['LABTORCH_ROLLBACK {"target": 1,'], None),
        (["x", 'LABTORCH_ROLLBACK {"target": 1}'], {"target": 1}),
    ],
)
def test_the_rollback_result_is_its_marked_json_line_or_none(lines, result) -> None:
    assert rollback_result(lines) == result


# ---- the host state ---------------------------------------------------------------------------

LINUX = ["@@labtorch system", "Linux", "@@labtorch machine", "x86_64"]


def _smi_sections(status: str, *capabilities: str) -> list[str]:
    return [
        "@@labtorch nvidia-smi",
        *A100_TABLE.read_text().splitlines(),
        f"@@labtorch nvidia-smi-status {status}",
        "@@labtorch compute-cap",
        *capabilities,
    ]


def test_a_readable_nvidia_smi_that_exited_non_zero_is_a_failure() -> None:
    state = parse_host_state([*LINUX, *_smi_sections("6", "0, 8.0")])
    assert state.nvidia_smi == SmiFailure(
        SmiFailureKind.UNRECOGNISED, "nvidia-smi exited 6", "Wed Feb  5 14:07:58 2025       "
    )


def test_reported_capabilities_replace_the_catalog_and_unreadable_lines_are_skipped() -> None:
    state = parse_host_state([*LINUX, *_smi_sections("0", "0, 9.0", "index, compute_cap", "1, x")])
    assert isinstance(state.nvidia_smi, SmiReport)
    [gpu] = state.nvidia_smi.gpus
    assert (gpu.capability, gpu.capability_source) == (ComputeCapability(9, 0), "reported")


@pytest.mark.parametrize(
    ("section", "owner"),
    [
        ([], None),
        (["@@labtorch run-lock"], None),
        (["@@labtorch run-lock", ""], ""),
        (["@@labtorch run-lock", "", "run r1 by ctl.lab pid 42"], "run r1 by ctl.lab pid 42"),
    ],
)
def test_the_run_lock_owner_none_without_a_lock_empty_when_unreadable(section, owner) -> None:
    assert parse_host_state([*LINUX, *section]).run_lock == owner


@pytest.mark.parametrize(
    "cache",
    [
        ['{"prefix": "/e", "packages": {}', ""],
        ["[1, 2]", ""],
        [],
    ],
)
def test_a_damaged_or_missing_probe_cache_is_no_cache(cache) -> None:
    assert parse_host_state([*LINUX, "@@labtorch probe-cache", *cache]).probe_cache is None


@pytest.mark.parametrize(
    ("kinds", "conda", "venv"),
    [
        # Nothing at the env's path: nothing foreign.
        (None, False, False),
        ([], True, True),
        (["venv"], True, False),
        (["conda"], False, True),
        (["conda", "venv"], False, False),
    ],
)
def test_a_directory_at_the_env_path_of_another_kind_is_foreign(kinds, conda, venv) -> None:
    lines = [*LINUX]
    if kinds is not None:
        lines += ["@@labtorch env", "/opt/e", "@@labtorch env-kind", *kinds]
    state = parse_host_state(lines)
    assert (state.env_is_foreign("conda"), state.env_is_foreign("pip")) == (conda, venv)


def test_without_conda_there_is_no_conda_root() -> None:
    state = parse_host_state([*LINUX, "@@labtorch conda"])
    assert (state.conda_exe, state.conda_root, state.conda_version) == (None, None, None)


def test_conda_meta_lines_that_name_no_package_record_are_skipped() -> None:
    lines = [
        *LINUX,
        "@@labtorch env",
        "/opt/e",
        "@@labtorch conda-meta",
        '/opt/e/conda-meta/history: "url": "https://x"',
        '/opt/e/conda-meta/nodashes.json: "url": "https://x/nodashes.conda"',
        "grep: /opt/e/conda-meta/*.json: No such file or directory",
        '/opt/e/conda-meta/zlib-1.3.1-hb9d3cd8_2.json: "url": ""',
    ]
    assert parse_host_state(lines).env_packages == {
        "zlib": InstalledPackage("zlib", "1.3.1", "hb9d3cd8_2", None)
    }


def test_dist_info_lines_that_are_no_distribution_are_skipped() -> None:
    lines = [
        "/v/lib/python3.11/site-packages/Torch_Audio-2.9.1+cu126.dist-info",
        "ls: cannot access '/v/lib/python3*/site-packages/*.dist-info': No such file or directory",
        "/v/lib/python3.11/site-packages/README.txt",
    ]
    assert parse_dist_info(lines) == {
        "torch-audio": InstalledPackage("torch-audio", "2.9.1+cu126", None, None)
    }


def test_the_rollback_read_run_by_sh_prints_the_state_and_every_kept_history_entry(
    tmp_path: Path,
) -> None:
    history = tmp_path / "venvs" / "torch" / ".labtorch-history"
    history.mkdir(parents=True)
    (tmp_path / "venvs" / "torch" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (history / "0002.json").write_text('{"id": 2, "torch": "2.9.1+cu126"}')
    (history / "0001.json").write_text('{"id": 1, "torch": "2.9.1+cpu"}\n')
    (history / "notes.txt").write_text('{"id": 9}\n')
    script = rollback_state_script("pip", "torch", "user", str(tmp_path / "venvs"), "env")
    done = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    state, states = parse_rollback_state(done.stdout.splitlines())
    assert state.env_prefix == f"{tmp_path}/venvs/torch"
    assert state.env_kinds == ("venv",)
    assert states == [{"id": 1, "torch": "2.9.1+cpu"}, {"id": 2, "torch": "2.9.1+cu126"}]


def test_output_without_the_audit_marker_is_not_an_audit() -> None:
    with pytest.raises(ValueError, match=r"^not labtorch audit output \(no audit marker\)$"):
        parse_audit(["@@labtorch system", "Linux", "@@labtorch-env venv /opt/v"])
