"""The lock rules on inputs the solve and the e2e runs never give them: a class for macOS or
Windows, a host glibc outside manylinux's range, a solve without a digest, damaged lock files
and indexes, mirror bases that share nothing, an index entry made for other inputs. Each case's
input and expected answer are written out."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from labtorch.rules.locks import (
    MD5,
    SHA256,
    LockClass,
    LockedPackage,
    LockEntry,
    LockError,
    parse_explicit,
    parse_index,
    parse_requirements,
    pip_target,
    rebase_pairs,
    render_explicit,
    render_index,
    usable,
    virtual_packages,
)

CPU_OSX = LockClass("conda", "conda-forge", "osx-arm64", "3.12", "2.7.1", "cpu", None, False)
CUDA_WIN = LockClass("conda", "conda-forge", "win-64", "3.12", "2.7.1", "cu126", "12.6", False)
PIP_LINUX = LockClass("pip", "pip", "linux-64", "3.12", "2.9.1+cu126", "cu126", "12.6", False)
PIP_ARM = LockClass("pip", "pip", "linux-aarch64", "3.12", "2.9.1", "cpu", None, False)


@pytest.mark.parametrize(
    ("lock", "packages"),
    [
        # Not Linux: no glibc, kernel or archspec to assume; CUDA only where the build has it.
        (CPU_OSX, [("__unix", "0", "0")]),
        (CUDA_WIN, [("__cuda", "12.6", "0"), ("__unix", "0", "0")]),
    ],
)
def test_virtual_packages_outside_linux(lock, packages) -> None:
    assert virtual_packages(lock, "2.28") == packages


@pytest.mark.parametrize(
    ("lock", "glibc", "target"),
    [
        (PIP_LINUX, "2.35", "x86_64-manylinux_2_35"),
        (PIP_LINUX, None, "x86_64-manylinux_2_17"),
        # Outside manylinux's range, the range's end; a glibc 3 (or unreadable) is the floor.
        (PIP_LINUX, "2.12", "x86_64-manylinux_2_17"),
        (PIP_LINUX, "2.43", "x86_64-manylinux_2_40"),
        (PIP_ARM, "3.1", "aarch64-manylinux_2_17"),
    ],
)
def test_the_pip_target_is_manylinux_at_the_oldest_glibc_within_range(lock, glibc, target) -> None:
    assert pip_target(lock, glibc) == target


def test_pip_locks_are_linux_only() -> None:
    osx = LockClass("pip", "pip", "osx-arm64", "3.12", "2.9.1", "cpu", None, False)
    with pytest.raises(
        ValueError, match=r"^pip locks are made for linux-64 and linux-aarch64, not osx-arm64$"
    ):
        pip_target(osx, "2.35")


FORGE = "https://mirror/anaconda/cloud/conda-forge/linux-64"


def test_a_solve_without_the_digest_cannot_be_rendered() -> None:
    package = LockedPackage("zlib", "1.3.1", "h_2", f"{FORGE}/zlib-1.3.1-h_2.conda", "a" * 64)
    with pytest.raises(ValueError, match=r"^zlib-1.3.1-h_2.conda has no md5 in the solve$"):
        render_explicit(CUDA_WIN.id, CUDA_WIN, [package], MD5)


def test_an_explicit_file_without_the_explicit_line_is_refused() -> None:
    with pytest.raises(LockError, match=r"^lab.txt: no @EXPLICIT line: not a conda explicit file$"):
        parse_explicit(f"{FORGE}/zlib-1.3.1-h_2.conda#{'a' * 64}\n", "lab.txt")


def test_comments_and_blank_lines_after_the_explicit_line_are_skipped() -> None:
    text = f"@EXPLICIT\n\n# a comment\n{FORGE}/zlib-1.3.1-h_2.conda#sha256:{'a' * 64}\n"
    assert parse_explicit(text) == [(f"{FORGE}/zlib-1.3.1-h_2.conda", SHA256, "a" * 64)]


def test_a_requirement_that_is_no_wheel_is_refused() -> None:
    line = f"torch @ https://mirror/torch-2.9.1.tar.gz --hash=sha256:{'a' * 64}"
    with pytest.raises(
        LockError, match=r"^req.txt: not a wheel URL: https://mirror/torch-2.9.1.tar.gz$"
    ):
        parse_requirements(line + "\n", "req.txt")


@pytest.mark.parametrize(
    ("primary", "fallback", "pairs"),
    [
        # Nothing in common but the scheme: the whole URLs pair up, never "https:/".
        (["https://a/x"], ["https://b/y"], [("https://a/x/", "https://b/y/")]),
        (["https://a/x/c"], ["https://b/c"], [("https://a/x/", "https://b/")]),
        # The same URL on both: nothing to rebase.
        (["https://a/c"], ["https://a/c"], []),
    ],
)
def test_rebase_pairs_stop_at_the_host(primary, fallback, pairs) -> None:
    assert rebase_pairs(primary, fallback) == pairs


# ---- the index --------------------------------------------------------------------------------


REQUIREMENTS = (
    "torch @ https://mirror/pytorch-wheels/cu126/torch-2.9.1%2Bcu126-cp312-cp312-linux_x86_64.whl"
    f" --hash=sha256:{'a' * 64}\n"
)


def _entry(glibc: str | None = "2.28") -> LockEntry:
    return LockEntry(
        lock=PIP_LINUX,
        created="2026-11-29T10:00:00Z",
        solver="uv 0.9.5",
        mirror="tuna",
        sources=("https://mirror/pypi/web/simple",),
        hosts=("gpu-01",),
        files={f"{PIP_LINUX.id}/requirements.txt": REQUIREMENTS},
        glibc=glibc,
        target="x86_64-manylinux_2_28",
        packages=1,
    )


def test_an_index_round_trips() -> None:
    entry = _entry()
    parsed = parse_index(render_index([entry]), entry.files.get)
    assert parsed == {entry.id: entry}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("version: [1\n", "index.yaml: not YAML: "),
        ("- 1\n", "index.yaml: not a labtorch lock index of version "),
        ("version: 0\n", "index.yaml: not a labtorch lock index of version "),
    ],
)
def test_an_index_that_is_not_one_is_refused(text, error) -> None:
    with pytest.raises(LockError) as caught:
        parse_index(text, {}.get, "index.yaml")
    assert str(caught.value).startswith(error)


def _broken(edit) -> str:
    entry = _entry()
    data = yaml.safe_load(render_index([entry]))
    edit(data["classes"][entry.id])
    return yaml.safe_dump(data)


def test_an_entry_whose_inputs_are_incomplete_is_refused() -> None:
    text = _broken(lambda record: record["inputs"].pop("platform"))
    with pytest.raises(LockError) as caught:
        parse_index(text, _entry().files.get, "index.yaml")
    assert str(caught.value) == f"index.yaml: {PIP_LINUX.id}: inputs incomplete ('platform')"


def test_an_entry_whose_inputs_are_another_class_s_is_refused() -> None:
    text = _broken(lambda record: record["inputs"].update(python="3.11"))
    other = LockClass("pip", "pip", "linux-64", "3.11", "2.9.1+cu126", "cu126", "12.6", False)
    with pytest.raises(LockError) as caught:
        parse_index(text, _entry().files.get, "index.yaml")
    assert str(caught.value) == f"index.yaml: {PIP_LINUX.id}: its inputs are those of {other.id}"


@pytest.mark.parametrize(
    ("entry", "lock", "glibc", "why"),
    [
        (None, PIP_LINUX, "2.35", f"no lock for class {PIP_LINUX.id} ({PIP_LINUX.describe()})"),
        (_entry(), PIP_ARM, "2.35", f"the lock {PIP_LINUX.id} was made for other inputs"),
        (
            _entry(),
            PIP_LINUX,
            "2.17",
            f"the lock {PIP_LINUX.id} was solved for glibc 2.28 and newer; this host has "
            "glibc 2.17",
        ),
        (_entry(), PIP_LINUX, "2.28", None),
        (_entry(), PIP_LINUX, None, None),
        (_entry(glibc=None), PIP_LINUX, "2.17", None),
    ],
)
def test_a_lock_is_usable_only_for_its_class_and_a_glibc_at_least_its_own(
    entry, lock, glibc, why
) -> None:
    assert usable(entry, lock, glibc) == why


def test_the_digest_of_a_file_is_its_sha256() -> None:
    entry = _entry()
    record = entry.record()
    path = f"{PIP_LINUX.id}/requirements.txt"
    assert record["files"] == {path: hashlib.sha256(REQUIREMENTS.encode()).hexdigest()}
