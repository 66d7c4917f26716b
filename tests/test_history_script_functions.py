"""The env history program's functions called in this process: how it reads an env (conda's
revision and explicit list, pip's dist-info, direct_url.json and install report), keeps its
states, and puts a pip state back, with a venv written out by the test and stand-ins for conda
and the env's pip that do what the real ones do to the files the program reads.
``test_env_history.py`` runs the program as a host does, against the conda stand-in; these reach
the paths that run cannot (damaged records, an old conda, a pip state, every refusal)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from labtorch.facts import history_script as hs

FORGE = "https://mirror.example/anaconda/cloud/conda-forge/linux-64"
WHEELS = "https://mirror.example/pytorch-wheels/cu126"
SHA_A = "a" * 64
SHA_B = "b" * 64


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _executable(path: Path, body: str) -> str:
    _write(path, f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return str(path)


# ---- small readers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "normal"),
    [
        ("torch", "torch"),
        ("Torch_Audio", "torch-audio"),
        ("zope.interface", "zope-interface"),
        ("a-_.b", "a-b"),
    ],
)
def test_names_are_normalized_as_pip_compares_them(name, normal) -> None:
    assert hs.normalize(name) == normal


@pytest.mark.parametrize(
    ("history", "revision"),
    [
        (None, None),
        ("", None),
        ("==> 2026-11-29 10:00:00 <==\n+conda-forge/linux-64::python-3.12.8-h_0\n", 0),
        (
            "==> 2026-11-29 10:00:00 <==\n# cmd: conda create\n"
            "==> 2026-11-29 11:00:00 <==\n  ==> 2026-11-29 12:00:00 <==  \n",
            2,
        ),
    ],
)
def test_the_conda_revision_counts_the_history_heads(tmp_path, history, revision) -> None:
    if history is not None:
        _write(tmp_path / "conda-meta" / "history", history)
    assert hs.conda_revision(str(tmp_path)) == revision


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (
            "echo 'solving'; echo 'CondaHTTPError: HTTP 404 NOT FOUND' >&2; exit 1",
            "conda install failed (exit 1): CondaHTTPError: HTTP 404 NOT FOUND",
        ),
        # No line says "error": the last one is given.
        ("echo first; echo '  last words  '; exit 3", "conda install failed (exit 3): last words"),
        ("exit 2", "conda install failed (exit 2): "),
    ],
)
def test_a_failed_command_is_one_line_of_what_it_said(command, error) -> None:
    with pytest.raises(hs.Failure) as caught:
        hs._run(["sh", "-c", command], "conda install")
    assert str(caught.value) == error


def test_a_command_that_works_gives_its_output() -> None:
    assert hs._run(["sh", "-c", "echo out; echo err >&2"], "x") == "out\n"


# ---- conda's explicit list --------------------------------------------------------------------

# A conda stand-in for `conda list -p P --explicit --md5|--sha256`: what it prints for each comes
# from the environment, "fail" makes it fail as a conda without that flag does.
FAKE_CONDA = """
import os, sys
algorithm = sys.argv[-1][2:]
text = os.environ["FAKE_CONDA_" + algorithm.upper()]
if text == "fail":
    sys.stderr.write("error: unrecognized arguments: --" + algorithm + "\\n")
    sys.exit(2)
sys.stdout.write(text)
"""


@pytest.fixture
def conda(tmp_path: Path) -> str:
    return _executable(tmp_path / "bin" / "conda", FAKE_CONDA)


PYTORCH = f"{FORGE}/pytorch-2.7.1-cpu_generic_py312_h_0.conda"
ZLIB = f"{FORGE}/libzlib-1.3.1-hb9d3cd8_2.tar.bz2"


def test_conda_packages_with_md5s_need_no_sha256(conda, monkeypatch) -> None:
    monkeypatch.setenv(
        "FAKE_CONDA_MD5", f"# platform: linux-64\n@EXPLICIT\n{PYTORCH}#0f\n{ZLIB}#1e\n"
    )
    monkeypatch.setenv("FAKE_CONDA_SHA256", "must not be read")
    assert hs.conda_packages("/e", conda) == [
        {
            "name": "pytorch",
            "version": "2.7.1",
            "build": "cpu_generic_py312_h_0",
            "url": PYTORCH,
            "md5": "0f",
            "sha256": None,
        },
        {
            "name": "libzlib",
            "version": "1.3.1",
            "build": "hb9d3cd8_2",
            "url": ZLIB,
            "md5": "1e",
            "sha256": None,
        },
    ]


@pytest.mark.parametrize(
    ("sha256_listing", "sha256"),
    [
        # conda >= 24.9 knows the sha256 of a package it has no md5 of.
        (f"@EXPLICIT\n{PYTORCH}#{SHA_A}\n{ZLIB}\n", SHA_A),
        # An older conda has no --sha256: no hashes, not a failure.
        ("fail", None),
    ],
)
def test_a_package_without_md5_takes_the_sha256_conda_knows(
    conda, monkeypatch, sha256_listing, sha256
) -> None:
    monkeypatch.setenv("FAKE_CONDA_MD5", f"@EXPLICIT\n{PYTORCH}\n{ZLIB}#1e\n")
    monkeypatch.setenv("FAKE_CONDA_SHA256", sha256_listing)
    packages = hs.conda_packages("/e", conda)
    assert [(p["name"], p["md5"], p["sha256"]) for p in packages] == [
        ("pytorch", None, sha256),
        ("libzlib", "1e", None),
    ]


def test_conda_packages_fail_when_the_md5_listing_fails(conda, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_CONDA_MD5", "fail")
    with pytest.raises(hs.Failure, match=r"^conda list --explicit failed \(exit 2\): error: "):
        hs.conda_packages("/e", conda)


def test_a_url_that_names_no_package_archive_is_refused(conda, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_CONDA_MD5", f"@EXPLICIT\n{FORGE}/pytorch-2.7.1.zip#0f\n")
    with pytest.raises(hs.Failure) as caught:
        hs.conda_packages("/e", conda)
    assert str(caught.value) == (
        f"conda list --explicit printed an unexpected URL: {FORGE}/pytorch-2.7.1.zip"
    )


# ---- pip's distributions ----------------------------------------------------------------------


def _dist(
    prefix: Path, name: str, version: str, *, metadata: str | None = None, direct=None
) -> Path:
    info = prefix / "lib" / "python3.11" / "site-packages" / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    if metadata is None:
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nName: not-me\n"
    if metadata != "absent":
        _write(info / "METADATA", metadata)
    if direct is not None:
        _write(info / "direct_url.json", direct if isinstance(direct, str) else json.dumps(direct))
    return info


def _pip_report(prefix: Path, *installs: dict) -> None:
    _write(prefix / hs.PIP_REPORT, json.dumps({"version": "1", "install": list(installs)}))


def _reported(name: str, version: str, url: str | None, sha256: str | None) -> dict:
    info = {"url": url, "archive_info": {"hashes": {"sha256": sha256} if sha256 else {}}}
    return {"metadata": {"name": name, "version": version}, "download_info": info}


def test_pip_packages_take_each_file_from_direct_url_the_report_or_an_older_state(
    tmp_path,
) -> None:
    # direct_url.json with the hash pip writes now, and with the legacy "hash" key.
    _dist(
        tmp_path,
        "torch",
        "2.9.1+cu126",
        direct={"url": f"{WHEELS}/torch.whl", "archive_info": {"hashes": {"sha256": SHA_A}}},
    )
    _dist(
        tmp_path,
        "triton",
        "3.5.1",
        direct={"url": f"{WHEELS}/triton.whl", "archive_info": {"hash": f"sha256={SHA_B}"}},
    )
    # A direct_url.json without a hash, or damaged, says nothing: the report does.
    _dist(tmp_path, "filelock", "3.20.0", direct={"url": "https://x/filelock.whl"})
    _dist(tmp_path, "sympy", "1.14.0", direct="{not json")
    _pip_report(
        tmp_path,
        _reported("FileLock", "3.20.0", "https://pypi/filelock.whl", "c" * 64),
        _reported("sympy", "1.14.0", "https://pypi/sympy.whl", None),
        {"metadata": {}, "download_info": {}},
    )
    # Only an older state knows where this one came from.
    _dist(tmp_path, "Jinja2", "3.1.6")
    _dist(tmp_path, "mpmath", "1.3.0", direct={"url": "u", "archive_info": {"hash": "md5=00"}})
    # A dist-info without METADATA, or whose METADATA names no version, is not a distribution.
    _dist(tmp_path, "broken", "1.0", metadata="absent")
    _dist(tmp_path, "nameless", "1.0", metadata="Metadata-Version: 2.1\nName: nameless\n")
    states = [
        {
            "packages": [
                {
                    "name": "jinja2",
                    "version": "3.1.6",
                    "url": "https://pypi/j.whl",
                    "sha256": "d" * 64,
                }
            ]
        },
        {"packages": None},
        {
            "packages": [
                {"name": "mpmath", "version": "1.2.0", "url": "o", "sha256": "e" * 64},
                {"name": "mpmath", "version": "1.3.0", "url": None, "sha256": None},
            ]
        },
    ]
    assert hs.pip_packages(str(tmp_path), states) == [
        {"name": "Jinja2", "version": "3.1.6", "url": "https://pypi/j.whl", "sha256": "d" * 64},
        {
            "name": "filelock",
            "version": "3.20.0",
            "url": "https://pypi/filelock.whl",
            "sha256": "c" * 64,
        },
        {"name": "mpmath", "version": "1.3.0", "url": None, "sha256": None},
        {"name": "sympy", "version": "1.14.0", "url": None, "sha256": None},
        {"name": "torch", "version": "2.9.1+cu126", "url": f"{WHEELS}/torch.whl", "sha256": SHA_A},
        {"name": "triton", "version": "3.5.1", "url": f"{WHEELS}/triton.whl", "sha256": SHA_B},
    ]


def test_a_damaged_install_report_is_no_report(tmp_path) -> None:
    _write(tmp_path / hs.PIP_REPORT, '{"install": [')
    _dist(tmp_path, "torch", "2.9.1")
    assert hs.pip_packages(str(tmp_path), []) == [
        {"name": "torch", "version": "2.9.1", "url": None, "sha256": None}
    ]


@pytest.mark.parametrize(
    ("kind", "packages", "version"),
    [
        (
            "conda",
            [{"name": "torch", "version": "1"}, {"name": "pytorch", "version": "2.7.1"}],
            "2.7.1",
        ),
        (
            "pip",
            [{"name": "pytorch", "version": "1"}, {"name": "Torch", "version": "2.9.1"}],
            "2.9.1",
        ),
        ("pip", [{"name": "numpy", "version": "2.3.4"}], None),
    ],
)
def test_torch_version_is_pytorch_for_conda_and_torch_for_pip(kind, packages, version) -> None:
    assert hs.torch_version(kind, packages) == version


@pytest.mark.parametrize(
    ("kind", "packages", "fingerprint"),
    [
        (
            "conda",
            [
                {"name": "zlib", "version": "1.3.1", "build": "h_2"},
                {"name": "pytorch", "version": "2.7.1", "build": "cpu_0"},
            ],
            ["pytorch-2.7.1-cpu_0", "zlib-1.3.1-h_2"],
        ),
        (
            "pip",
            [{"name": "Torch_Audio", "version": "2.9.1"}, {"name": "torch", "version": "2.9.1"}],
            ["torch-audio==2.9.1", "torch==2.9.1"],
        ),
    ],
)
def test_the_fingerprint_is_conda_builds_or_pip_versions(kind, packages, fingerprint) -> None:
    assert hs.fingerprint(kind, packages) == fingerprint


# ---- the history directory --------------------------------------------------------------------


def test_load_states_skips_what_is_not_a_state_and_orders_by_number(tmp_path) -> None:
    history = tmp_path / hs.DIRECTORY
    _write(history / "0010.json", '{"id": 10}')
    _write(history / "0002.json", '{"id": 2}')
    _write(history / "0003.json", '{"id": 3')
    _write(history / "0004.json", "[4]")
    _write(history / "0005.json", '{"id": "5"}')
    _write(history / ".new-x", '{"id": 6}')
    (history / "0007.json").mkdir()
    assert hs.load_states(str(tmp_path)) == [{"id": 2}, {"id": 10}]


def _state(packages) -> dict:
    return {"packages": packages, "conda_revision": None}


TORCH = {"name": "torch", "version": "2.9.1", "url": "u", "sha256": SHA_A}


def test_save_state_numbers_after_the_highest_and_keeps_the_newest(tmp_path) -> None:
    states = []
    for reason in ("a", "b", "c"):
        entry = hs.save_state(str(tmp_path), "pip", 2, "r", reason, _state([TORCH]), states)
        states = hs.load_states(str(tmp_path))
    assert (entry["id"], entry["reason"], entry["torch"], entry["kind"]) == (3, "c", "2.9.1", "pip")
    assert sorted(os.listdir(tmp_path / hs.DIRECTORY)) == ["0002.json", "0003.json"]
    assert oct((tmp_path / hs.DIRECTORY / "0003.json").stat().st_mode & 0o777) == "0o644"


def test_save_state_never_drops_the_state_being_put_back(tmp_path) -> None:
    for reason in ("a", "b", "c"):
        hs.save_state(
            str(tmp_path), "pip", 5, "r", reason, _state([]), hs.load_states(str(tmp_path))
        )
    states = hs.load_states(str(tmp_path))
    entry = hs.save_state(str(tmp_path), "pip", 2, "r", "d", _state([]), states, spare=1)
    assert entry["id"] == 4
    # keep 2: the new state and the spare one; 2 and 3 go.
    assert sorted(os.listdir(tmp_path / hs.DIRECTORY)) == ["0001.json", "0004.json"]


# ---- the program: record, and put a pip state back --------------------------------------------

# The env's pip, as far as the program uses it: uninstall removes dist-info directories, install
# of a hash-checked requirements file writes each one with its direct_url.json and the report.
FAKE_PIP = """
import json, os, re, shutil, sys
prefix = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[0])))
site = os.path.join(prefix, "lib", "python3.11", "site-packages")
args = sys.argv[3:]
if os.environ.get("FAKE_PIP_FAIL") == args[0]:
    sys.stderr.write("ERROR: THESE PACKAGES DO NOT MATCH THE HASHES\\n")
    sys.exit(1)
if args[0] == "uninstall":
    for name in args[3:]:
        for entry in os.listdir(site):
            if re.sub(r"[-_.]+", "-", entry.split("-")[0]).lower() == name:
                shutil.rmtree(os.path.join(site, entry))
else:
    report = args[args.index("--report") + 1]
    installs = []
    for line in open(args[args.index("-r") + 1]):
        name, _, rest = line.partition(" @ ")
        url, sha = rest.split(" --hash=sha256:")
        version = url.rsplit("/", 1)[1].split("-")[1]
        for entry in os.listdir(site):
            if entry.startswith(name + "-"):
                shutil.rmtree(os.path.join(site, entry))
        info = os.path.join(site, name + "-" + version + ".dist-info")
        os.makedirs(info)
        open(os.path.join(info, "METADATA"), "w").write(
            "Name: " + name + "\\nVersion: " + version + "\\n")
        json.dump({"url": url, "archive_info": {"hashes": {"sha256": sha.strip()}}},
                  open(os.path.join(info, "direct_url.json"), "w"))
        installs.append(line.strip())
    open(os.path.join(prefix, "pip-calls.txt"), "a").write("\\n".join(installs) + "\\n")
"""


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    prefix = tmp_path / "venv"
    _executable(prefix / "bin" / "python", FAKE_PIP)
    (prefix / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    return prefix


def _wheel(name: str, version: str, sha: str) -> dict:
    return {
        "url": f"{WHEELS}/{name}-{version}-py3-none-any.whl",
        "archive_info": {"hashes": {"sha256": sha}},
    }


def _program(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["labtorch-history", *argv])
    try:
        hs.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _result(out: str) -> dict:
    [line] = [line for line in out.splitlines() if line.startswith(hs.MARK)]
    return json.loads(line[len(hs.MARK) :])


def test_record_then_put_a_pip_state_back(venv, monkeypatch, capsys) -> None:
    _dist(venv, "torch", "2.9.1+cpu", direct=_wheel("torch", "2.9.1+cpu", SHA_A))
    _dist(venv, "numpy", "2.3.4", direct=_wheel("numpy", "2.3.4", SHA_B))
    code, out, _ = _program(monkeypatch, capsys, "record", str(venv), "pip", "5", "r1", "first")
    assert (code, out) == (0, f"recorded state 1 of {venv}: torch 2.9.1+cpu\n")
    # The env changes: torch to another build, numpy gone, filelock added.
    site = venv / "lib" / "python3.11" / "site-packages"
    for entry in site.iterdir():
        shutil.rmtree(entry)
    _dist(venv, "torch", "2.9.1+cu126", direct=_wheel("torch", "2.9.1+cu126", "f" * 64))
    _dist(venv, "filelock", "3.20.0", direct=_wheel("filelock", "3.20.0", "c" * 64))

    code, out, err = _program(monkeypatch, capsys, "restore", str(venv), "pip", "5", "r2", "1")
    assert (code, err) == (0, ""), err
    assert _result(out) == {
        "target": 1,
        "from": "2.9.1+cu126",
        "to": "2.9.1+cpu",
        "how": "the recorded hash-checked requirements (pip install --require-hashes)",
        "recorded": 2,
    }
    assert sorted(p.name for p in site.iterdir()) == [
        "numpy-2.3.4.dist-info",
        "torch-2.9.1+cpu.dist-info",
    ]
    # Each file installed by its URL with the hash in its fragment, checked by its hash.
    assert (venv / "pip-calls.txt").read_text().splitlines() == [
        f"numpy @ {WHEELS}/numpy-2.3.4-py3-none-any.whl#sha256={SHA_B} --hash=sha256:{SHA_B}",
        f"torch @ {WHEELS}/torch-2.9.1+cpu-py3-none-any.whl#sha256={SHA_A} --hash=sha256:{SHA_A}",
    ]
    # Put back the state it already is: nothing done, nothing recorded.
    code, out, _ = _program(monkeypatch, capsys, "restore", str(venv), "pip", "5", "r3", "1")
    assert _result(out) == {
        "target": 1,
        "from": "2.9.1+cpu",
        "to": "2.9.1+cpu",
        "how": None,
        "recorded": None,
    }
    assert [s["id"] for s in hs.load_states(str(venv))] == [1, 2]


@pytest.mark.parametrize(
    ("kept", "target", "kind", "error"),
    [
        ([], 1, "pip", "labtorch: no state 1 recorded in {venv} (kept: none)\n"),
        ([1, 2], 7, "pip", "labtorch: no state 7 recorded in {venv} (kept: 1, 2)\n"),
        ([1], 1, "conda", "labtorch: state 1 is of a pip env, not conda\n"),
    ],
)
def test_a_state_that_cannot_be_put_back_fails_with_why(
    venv, monkeypatch, capsys, kept, target, kind, error
) -> None:
    for number in kept:
        _write(
            venv / hs.DIRECTORY / f"{number:04d}.json",
            json.dumps({"id": number, "kind": "pip", "packages": []}),
        )
    argv = ["restore", str(venv), kind, "5", "r", str(target)]
    assert _program(monkeypatch, capsys, *argv) == (1, "", error.format(venv=venv))


def test_a_pip_state_whose_files_are_not_known_is_refused(venv, monkeypatch, capsys) -> None:
    _dist(venv, "torch", "2.9.1+cu126")
    packages = [
        {"name": "torch", "version": "2.9.1+cpu", "url": None, "sha256": None},
        {"name": "numpy", "version": "2.3.4", "url": "n", "sha256": SHA_B},
    ]
    _write(
        venv / hs.DIRECTORY / "0001.json",
        json.dumps({"id": 1, "kind": "pip", "packages": packages}),
    )
    code, _, err = _program(monkeypatch, capsys, "restore", str(venv), "pip", "5", "r", "1")
    assert (code, err) == (
        1,
        "labtorch: state 1 cannot be put back: the file of torch==2.9.1+cpu is not known "
        "(no hash recorded)\n",
    )


@pytest.mark.parametrize(
    ("fail", "error"),
    [
        (
            "uninstall",
            "labtorch: pip uninstall failed (exit 1): ERROR: THESE PACKAGES DO NOT MATCH "
            "THE HASHES\n",
        ),
        (
            "install",
            "labtorch: pip install --require-hashes failed (exit 1): ERROR: THESE "
            "PACKAGES DO NOT MATCH THE HASHES\n",
        ),
    ],
)
def test_a_pip_that_fails_fails_the_restore_with_its_words(
    venv, tmp_path, monkeypatch, capsys, fail, error
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    _dist(venv, "torch", "2.9.1+cu126")
    _dist(venv, "filelock", "3.20.0")
    packages = [
        {
            "name": "torch",
            "version": "2.9.1+cpu",
            "url": f"{WHEELS}/torch-2.9.1+cpu-x.whl",
            "sha256": SHA_A,
        }
    ]
    _write(
        venv / hs.DIRECTORY / "0001.json",
        json.dumps({"id": 1, "kind": "pip", "packages": packages}),
    )
    monkeypatch.setenv("FAKE_PIP_FAIL", fail)
    assert _program(monkeypatch, capsys, "restore", str(venv), "pip", "5", "r", "1") == (
        1,
        "",
        error,
    )
    # The requirements file is removed, installed or not.
    assert os.listdir(temporary) == []


def test_a_restore_that_does_not_give_the_state_says_what_differs(
    venv, monkeypatch, capsys
) -> None:
    # The recorded file installs another version than the state says (a mirror that changed
    # the file under the same name): the check after the install sees it.
    _dist(venv, "torch", "2.9.1+cu126")
    packages = [
        {
            "name": "torch",
            "version": "2.9.1+cpu",
            "url": f"{WHEELS}/torch-2.9.0+cpu-py3-none-any.whl",
            "sha256": SHA_A,
        }
    ]
    _write(
        venv / hs.DIRECTORY / "0001.json",
        json.dumps({"id": 1, "kind": "pip", "packages": packages}),
    )
    code, _, err = _program(monkeypatch, capsys, "restore", str(venv), "pip", "5", "r", "1")
    assert (code, err) == (
        1,
        "labtorch: after the recorded hash-checked requirements (pip install --require-hashes) "
        "the env is not state 1: missing torch==2.9.1+cpu; not in the state torch==2.9.0+cpu\n",
    )


def test_the_record_of_a_conda_env_reads_conda(tmp_path, conda, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FAKE_CONDA_MD5", f"@EXPLICIT\n{PYTORCH}#0f\n")
    _write(tmp_path / "env" / "conda-meta" / "history", "==> 2026-11-29 10:00:00 <==\n")
    prefix = str(tmp_path / "env")
    code, out, _ = _program(monkeypatch, capsys, "record", prefix, "conda", "3", "r", "why", conda)
    assert (code, out) == (0, f"recorded state 1 of {prefix}: torch 2.7.1\n")
    [state] = hs.load_states(prefix)
    assert (state["conda_revision"], state["packages"][0]["md5"]) == (0, "0f")


# ---- putting a conda state back ---------------------------------------------------------------

# A conda env stand-in, its packages in PREFIX/env.json: `list --explicit --md5` prints them,
# `install --revision N` puts back revisions[N] (what conda's history says the revision held,
# which may not be the recorded state), `install --file` adds the listed URLs, `remove` drops
# packages by name; every call is logged.
FAKE_CONDA_ENV = """
import json, os, sys
args = sys.argv[1:]
prefix = args[args.index("-p") + 1]
path = os.path.join(prefix, "env.json")
env = json.load(open(path))
open(os.path.join(prefix, "calls.txt"), "a").write(" ".join(args[:1] + args[3:]) + "\\n")
name = lambda url: url.rsplit("/", 1)[1].rsplit("-", 2)[0]
if args[0] == "list":
    print("@EXPLICIT")
    for url in env["urls"]:
        print(url + "#" + env["md5"].get(url, ""))
    sys.exit(0)
if env.get("fail") == args[0]:
    sys.stderr.write("CondaError: cannot " + args[0] + "\\n")
    sys.exit(1)
if args[0] == "install" and "--revision" in args:
    revision = args[args.index("--revision") + 1]
    if revision not in env["revisions"]:
        sys.stderr.write("CondaIndexError: no such revision: " + revision + "\\n")
        sys.exit(1)
    env["urls"] = env["revisions"][revision]
elif args[0] == "install":
    listed = [l.split("#")[0] for l in open(args[args.index("--file") + 1]) if "/" in l]
    env["urls"] = [u for u in env["urls"] if name(u) not in map(name, listed)] + listed
elif args[0] == "remove":
    env["urls"] = [u for u in env["urls"] if name(u) not in args[6:]]
json.dump(env, open(path, "w"))
"""

OLD_TORCH = f"{FORGE}/pytorch-2.3.1-cpu_0.conda"
NEW_TORCH = f"{FORGE}/pytorch-2.7.1-cpu_0.conda"
PYTHON = f"{FORGE}/python-3.12.8-h_0.conda"
ZLIB_NEW = f"{FORGE}/zlib-1.3.1-h_2.conda"


@pytest.fixture
def conda_env(tmp_path: Path):
    prefix = tmp_path / "envs" / "torch"
    conda_exe = _executable(tmp_path / "bin" / "conda", FAKE_CONDA_ENV)

    def make(urls, revisions, history_heads, fail=None) -> str:
        md5 = {url: f"md5-{index}" for index, url in enumerate([OLD_TORCH, NEW_TORCH, PYTHON])}
        _write(
            prefix / "env.json",
            json.dumps({"urls": urls, "revisions": revisions, "md5": md5, "fail": fail}),
        )
        _write(prefix / "conda-meta" / "history", "==> 2026-11-29 10:00:00 <==\n" * history_heads)
        return conda_exe

    make.prefix = prefix
    return make


def _recorded_conda_state(prefix: Path, revision: int | None, urls: list[str]) -> None:
    packages = []
    for url in urls:
        name, version, build = url.rsplit("/", 1)[1].removesuffix(".conda").rsplit("-", 2)
        md5 = {OLD_TORCH: "md5-0", PYTHON: "md5-2"}.get(url)
        packages.append(
            {
                "name": name,
                "version": version,
                "build": build,
                "url": url,
                "md5": md5,
                "sha256": None if md5 else SHA_A,
            }
        )
    state = {
        "id": 1,
        "kind": "conda",
        "torch": "2.3.1",
        "conda_revision": revision,
        "packages": packages,
    }
    _write(prefix / hs.DIRECTORY / "0001.json", json.dumps(state))


def _calls(prefix: Path) -> list[str]:
    return [c for c in (prefix / "calls.txt").read_text().splitlines() if not c.startswith("list")]


def test_a_conda_state_whose_revision_holds_it_goes_back_by_revision(
    conda_env, monkeypatch, capsys
) -> None:
    conda = conda_env([NEW_TORCH, PYTHON], {"0": [OLD_TORCH, PYTHON]}, history_heads=2)
    _recorded_conda_state(conda_env.prefix, 0, [OLD_TORCH, PYTHON])
    argv = ["restore", str(conda_env.prefix), "conda", "5", "r", "1", conda]
    code, out, err = _program(monkeypatch, capsys, *argv)
    assert (code, err) == (0, "")
    assert _result(out) == {
        "target": 1,
        "from": "2.7.1",
        "to": "2.3.1",
        "how": "conda install --revision 0",
        "recorded": 2,
    }
    # Only the channel of the state's packages is searched.
    assert _calls(conda_env.prefix) == [
        f"install --revision 0 -y -q --override-channels -c {FORGE.rsplit('/', 1)[0]}"
    ]


@pytest.mark.parametrize(
    ("revision", "heads", "revisions", "tried"),
    [
        # The revision puts back something else than the state: the explicit list is used.
        (0, 2, {"0": [NEW_TORCH, ZLIB_NEW]}, True),
        # conda cannot go to the revision (its history was rewritten): the explicit list.
        (1, 2, {}, True),
        # A revision the env's history has not reached, or a state without one: never tried.
        (5, 2, {}, False),
        (None, 2, {}, False),
        (0, 0, {}, False),
    ],
)
def test_otherwise_a_conda_state_goes_back_by_its_explicit_list_and_extras_are_removed(
    conda_env, monkeypatch, capsys, revision, heads, revisions, tried
) -> None:
    conda = conda_env([NEW_TORCH, PYTHON, ZLIB_NEW], revisions, history_heads=heads)
    _recorded_conda_state(conda_env.prefix, revision, [OLD_TORCH, PYTHON])
    argv = ["restore", str(conda_env.prefix), "conda", "5", "r", "1", conda]
    code, out, err = _program(monkeypatch, capsys, *argv)
    assert (code, err) == (0, "")
    assert _result(out)["how"] == "the recorded explicit list (conda install --file)"
    calls = _calls(conda_env.prefix)
    assert calls[0].startswith("install --revision") == tried
    assert [c.split(" --file ")[0] for c in calls[tried:]] == [
        "install",
        "remove --offline -y -q zlib",
    ]


def test_the_explicit_list_carries_each_package_s_md5_else_its_sha256(
    conda_env, tmp_path, monkeypatch, capsys
) -> None:
    conda = conda_env([NEW_TORCH], {}, history_heads=1)
    _recorded_conda_state(conda_env.prefix, None, [OLD_TORCH, ZLIB_NEW])
    seen = tmp_path / "explicit.txt"
    real_run = hs._run

    def spy(command, what):
        if "--file" in command:
            seen.write_text(Path(command[command.index("--file") + 1]).read_text())
        return real_run(command, what)

    monkeypatch.setattr(hs, "_run", spy)
    argv = ["restore", str(conda_env.prefix), "conda", "5", "r", "1", conda]
    assert _program(monkeypatch, capsys, *argv)[0] == 0
    assert seen.read_text() == f"@EXPLICIT\n{OLD_TORCH}#md5-0\n{ZLIB_NEW}#{SHA_A}\n"


@pytest.mark.parametrize(
    ("fail", "error"),
    [
        ("install", "labtorch: conda install failed (exit 1): CondaError: cannot install\n"),
        ("remove", "labtorch: conda remove failed (exit 1): CondaError: cannot remove\n"),
    ],
)
def test_a_conda_that_fails_fails_the_restore_with_its_words(
    conda_env, monkeypatch, capsys, fail, error
) -> None:
    conda = conda_env([NEW_TORCH, ZLIB_NEW], {}, history_heads=1, fail=fail)
    _recorded_conda_state(conda_env.prefix, None, [OLD_TORCH])
    argv = ["restore", str(conda_env.prefix), "conda", "5", "r", "1", conda]
    assert _program(monkeypatch, capsys, *argv) == (1, "", error)
