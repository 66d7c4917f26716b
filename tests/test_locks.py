"""Locks, the pure part: classing plans, the lock files' formats, the index, the env against its
lock, and the same files on a fallback mirror (labtorch.rules.locks)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from test_rules import A100, GTX1080TI, H100, host, plan

from labtorch.facts.host_state import InstalledPackage
from labtorch.rules.commands import conda_install_explicit, pip_install_locked, render
from labtorch.rules.envdiff import CREATE, OK, REPAIR, REPLACE
from labtorch.rules.locks import (
    EXPLICIT_FILES,
    MD5,
    REQUIREMENTS_FILE,
    SHA256,
    LockClass,
    LockedPackage,
    LockEntry,
    LockError,
    conda_packages,
    hash_kind,
    lock_class,
    lock_diff,
    oldest_glibc,
    parse_explicit,
    parse_index,
    parse_requirements,
    pip_target,
    rebase,
    rebase_pairs,
    render_explicit,
    render_index,
    render_requirements,
    usable,
    virtual_packages,
)


def _h(text: str, n: int = 64) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


M = "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge"
PYTORCH = LockedPackage(
    "pytorch", "2.7.1", "cuda126_generic_py311_h1_200",
    f"{M}/linux-64/pytorch-2.7.1-cuda126_generic_py311_h1_200.conda",
    _h("pytorch"), _h("pytorch", 32), ("python >=3.11,<3.12.0a0", "cuda-version >=12.6,<12.7"),
)  # fmt: skip
PYTHON = LockedPackage(
    "python", "3.11.2", "h_0", f"{M}/linux-64/python-3.11.2-h_0.tar.bz2", _h("py"), _h("py", 32)
)
CUDA_VERSION = LockedPackage(
    "cuda-version", "12.6", "h7480c83_3", f"{M}/noarch/cuda-version-12.6-h7480c83_3.conda",
    _h("cv"), _h("cv", 32),
)  # fmt: skip
CONDA_LOCK = [PYTORCH, PYTHON, CUDA_VERSION]
WHEELS = "https://mirrors.aliyun.com/pytorch-wheels/cu126"
TORCH_WHEEL = LockedPackage(
    "torch", "2.9.1+cu126", None,
    f"{WHEELS}/torch-2.9.1%2Bcu126-cp311-cp311-manylinux_2_28_x86_64.whl", _h("torch"),
)  # fmt: skip
TRITON = LockedPackage(
    "triton", "3.5.1", None,
    "https://mirrors.tuna.tsinghua.edu.cn/pypi/web/packages/triton-3.5.1-cp311-cp311-"
    "manylinux_2_28_x86_64.whl", _h("triton"),
)  # fmt: skip


def _p(facts, torch: str, **request):
    return plan(facts, torch=torch, **request)


# ---- classes -----------------------------------------------------------------------------------


def test_hosts_whose_plans_agree_share_a_class_and_any_difference_makes_another():
    h100 = lock_class(_p(host("570.86", "12.8", H100), "2.7.1"))
    pascal = lock_class(_p(host("570.86", "12.8", GTX1080TI), "2.7.1"))
    assert h100 == pascal  # another GPU, the same build: one lock
    assert h100.id == pascal.id
    newer_driver = lock_class(_p(host("590.44", "13.1", H100), "2.7.1"))
    cpu = lock_class(_p(host(), "2.7.1"))
    old_channel = lock_class(_p(host("535.104", "12.2", A100), "2.3.1"))
    toolkit = lock_class(_p(host("570.86", "12.8", H100), "2.7.1", toolkit=True))
    wheels = lock_class(
        _p(host("580.65", "13.0", GTX1080TI, python="3.11"), "2.9.1", installer="pip")
    )
    ids = {c.id for c in (h100, newer_driver, cpu, old_channel, toolkit, wheels)}
    assert len(ids) == 6
    assert h100.id.startswith("conda-forge-linux-64-py3.1")
    assert "-cu126-" in h100.id and "-cpu-" in cpu.id and "-toolkit-" in toolkit.id
    assert old_channel.route == "pytorch" and wheels.route == "pip"
    assert wheels.wheel_index and wheels.index_url and not wheels.channels


@pytest.mark.parametrize(
    "change",
    [
        {"python": "3.12"},
        {"channels": ("https://mirrors.bfsu.edu.cn/anaconda/cloud/conda-forge",)},
        {"specs": ("pytorch=2.7.1=cuda126_*_py311_*",)},
        {"platform": "linux-aarch64"},
        {"toolkit": True},
    ],
)
def test_every_input_changes_the_class_id(change):
    base = lock_class(_p(host("570.86", "12.8", H100), "2.7.1"))
    assert replace(base, **change).id != base.id


def test_a_class_survives_the_round_trip_through_the_index_inputs():
    base = lock_class(_p(host("570.86", "12.8", H100, python="3.11"), "2.9.1", installer="pip"))
    assert LockClass.from_inputs(base.inputs()) == base


def test_a_refused_plan_has_no_class():
    with pytest.raises(ValueError, match="refused"):
        lock_class(_p(host("515.105", "11.7", H100), "2.6.0", variant="cu126"))


@pytest.mark.parametrize(
    ("conda", "kind"),
    [
        ("26.7.1", SHA256),
        ("24.9.0", SHA256),
        ("24.9.2", SHA256),
        ("24.11.3", SHA256),
        ("24.7.1", MD5),
        ("23.11.0", MD5),
        ("4.12.0", MD5),
        (None, MD5),
        ("", MD5),
    ],
)
def test_sha256_for_conda_24_9_and_newer_md5_before_and_when_unknown(conda, kind):
    assert hash_kind(conda) == kind


def test_virtual_packages_are_the_plans_cuda_and_the_oldest_glibc():
    cuda = lock_class(_p(host("590.44", "13.1", H100), "2.7.1"))
    assert cuda.cuda == "12.9"
    glibc = oldest_glibc(["2.36", "2.31", None, "2.39"])
    assert glibc == "2.31"
    assert virtual_packages(cuda, glibc) == [
        ("__archspec", "1", "x86_64"),
        ("__cuda", "12.9", "0"),  # the build's CUDA, not the driver's 13.1
        ("__glibc", "2.31", "0"),
        ("__linux", "5.10", "0"),
        ("__unix", "0", "0"),
    ]
    cpu = lock_class(_p(host(), "2.7.1"))
    assert "__cuda" not in {name for name, _, _ in virtual_packages(cpu, None)}
    assert ("__glibc", "2.17", "0") in virtual_packages(cpu, oldest_glibc([None]))


@pytest.mark.parametrize(
    ("glibc", "target"),
    [
        ("2.36", "x86_64-manylinux_2_36"),
        ("2.17", "x86_64-manylinux_2_17"),
        ("2.12", "x86_64-manylinux_2_17"),
        ("2.43", "x86_64-manylinux_2_40"),
        (None, "x86_64-manylinux_2_17"),
    ],
)
def test_pip_classes_resolve_for_manylinux_at_the_oldest_glibc(glibc, target):
    wheels = lock_class(_p(host("570.86", "12.8", H100, python="3.11"), "2.9.1", installer="pip"))
    assert pip_target(wheels, glibc) == target


# ---- files ---------------------------------------------------------------------------------------


def test_explicit_files_carry_sha256_or_md5_and_list_dependencies_first():
    lock = lock_class(_p(host("570.86", "12.8", H100), "2.7.1"))
    sha = render_explicit(lock.id, lock, CONDA_LOCK, SHA256)
    md5 = render_explicit(lock.id, lock, CONDA_LOCK, MD5)
    lines = sha.splitlines()
    assert lines[lines.index("@EXPLICIT") + 1 :] == [
        f"{CUDA_VERSION.url}#{CUDA_VERSION.sha256}",
        f"{PYTHON.url}#{PYTHON.sha256}",
        f"{PYTORCH.url}#{PYTORCH.sha256}",  # after what it depends on
    ]
    assert "# platform: linux-64" in lines
    assert [kind for _, kind, _ in parse_explicit(md5)] == [MD5] * 3
    assert conda_packages({SHA256: sha, MD5: md5}) == sorted(
        CONDA_LOCK, key=lambda p: [CUDA_VERSION, PYTHON, PYTORCH].index(p)
    )


@pytest.mark.parametrize(
    ("line", "accepted"),
    [
        (f"{PYTHON.url}#{PYTHON.md5}", True),
        (f"{PYTHON.url}#{PYTHON.sha256}", True),
        (f"{PYTHON.url}#sha256:{PYTHON.sha256}", True),  # conda's parser accepts the prefix
        (PYTHON.url, False),  # a lock checks every file
        (f"{PYTHON.url}#{PYTHON.md5[:31]}", False),
        (f"{PYTHON.url}#{PYTHON.sha256.upper()}", False),
        (f"{M}/linux-64/python.zip#{PYTHON.md5}", False),
    ],
)
def test_explicit_lines_need_a_package_url_and_a_hash(line, accepted):
    text = f"@EXPLICIT\n{line}\n"
    if accepted:
        assert parse_explicit(text)[0][0] == PYTHON.url
    else:
        with pytest.raises(LockError, match="not a package URL"):
            parse_explicit(text)


def test_md5_and_sha256_files_must_list_the_same_packages():
    lock = lock_class(_p(host("570.86", "12.8", H100), "2.7.1"))
    with pytest.raises(LockError, match="different packages"):
        conda_packages(
            {
                SHA256: render_explicit(lock.id, lock, CONDA_LOCK, SHA256),
                MD5: render_explicit(lock.id, lock, CONDA_LOCK[:2], MD5),
            }
        )


def test_pip_requirements_are_hashed_direct_references_for_require_hashes():
    lock = lock_class(_p(host("570.86", "12.8", H100, python="3.11"), "2.9.1", installer="pip"))
    text = render_requirements(lock.id, lock, [TRITON, TORCH_WHEEL])
    assert (
        f"torch @ {TORCH_WHEEL.url} \\\n    --hash=sha256:{TORCH_WHEEL.sha256}\n" in text
    )  # the label's + stays escaped in the URL, and the version is the full label
    assert text.index("torch @") < text.index("triton @")
    assert "pip install --no-deps --require-hashes --no-index -r" in text
    assert parse_requirements(text) == [TORCH_WHEEL, TRITON]
    with pytest.raises(LockError, match="--hash=sha256"):
        parse_requirements(f"torch @ {TORCH_WHEEL.url}\n")
    with pytest.raises(LockError, match="--hash=sha256"):
        parse_requirements("torch==2.9.1+cu126 --hash=sha256:" + "a" * 64 + "\n")


def test_the_install_words_come_from_the_one_builder():
    assert render(conda_install_explicit("conda", "create", "/opt/conda/envs/torch", "l.txt")) == (
        "conda create -p /opt/conda/envs/torch --file l.txt"
    )
    assert render(pip_install_locked(["/v/bin/python"], "l.txt", unattended=True)) == (
        "/v/bin/python -m pip install -q --disable-pip-version-check --no-deps "
        "--require-hashes --no-index -r l.txt"
    )


# ---- the same files on a fallback ------------------------------------------------------------


@pytest.mark.parametrize(
    ("primary", "fallback", "url", "expected"),
    [
        (  # TUNA -> BFSU: another host, the same paths
            ["https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge"],
            ["https://mirrors.bfsu.edu.cn/anaconda/cloud/conda-forge"],
            "https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge/noarch/x-1-0.conda",
            "https://mirrors.bfsu.edu.cn/anaconda/cloud/conda-forge/noarch/x-1-0.conda",
        ),
        (  # a fallback under a path of its own, as the lab's /fallback/
            ["http://127.0.0.1:8704/pypi/web/simple", "http://127.0.0.1:8704/pytorch-wheels/cpu/"],
            [
                "http://127.0.0.1:8704/fallback/pypi/web/simple",
                "http://127.0.0.1:8704/fallback/pytorch-wheels/cpu/",
            ],
            "http://127.0.0.1:8704/pytorch-wheels/cpu/torch-2.9.1%2Bcpu-cp311-none.whl",
            "http://127.0.0.1:8704/fallback/pytorch-wheels/cpu/torch-2.9.1%2Bcpu-cp311-none.whl",
        ),
        (  # PyPI files live beside the index, under the same base
            ["https://a.example/pypi/web/simple"],
            ["https://b.example/mirror/pypi/web/simple"],
            "https://a.example/pypi/web/packages/ab/cd/triton-3.5.1-py3-none-any.whl",
            "https://b.example/mirror/pypi/web/packages/ab/cd/triton-3.5.1-py3-none-any.whl",
        ),
        (  # a URL on no primary base stays as it is
            ["https://a.example/anaconda/cloud/pytorch"],
            ["https://b.example/anaconda/cloud/pytorch"],
            "https://elsewhere.example/x-1-0.conda",
            "https://elsewhere.example/x-1-0.conda",
        ),
    ],
)
def test_a_lock_url_on_a_fallback_is_the_same_relative_path(primary, fallback, url, expected):
    assert rebase(url, rebase_pairs(primary, fallback)) == expected


# ---- the env against its lock ------------------------------------------------------------------


def _installed(*packages: LockedPackage, url: str | None = None) -> dict[str, InstalledPackage]:
    return {
        p.name: InstalledPackage(p.name, p.version, p.build, url if url is not None else p.url)
        for p in packages
    }


OTHER_BUILD = replace(PYTORCH, build="cuda129_generic_py311_h2_200")
EXTRA = LockedPackage("numpy", "2.0", "h_0", f"{M}/linux-64/numpy-2.0-h_0.conda", _h("n"))


@pytest.mark.parametrize(
    ("installed", "action", "install", "remove", "problem"),
    [
        (_installed(*CONDA_LOCK), OK, (), (), None),
        (None, CREATE, (), (), "the env does not exist"),
        (_installed(PYTHON, CUDA_VERSION), REPAIR, ("pytorch",), (), "pytorch 2.7.1 cuda126"),
        (
            _installed(OTHER_BUILD, PYTHON, CUDA_VERSION),
            REPAIR, ("pytorch",), (), "cuda129_generic_py311_h2_200 is installed, the lock has",
        ),
        (_installed(*CONDA_LOCK, EXTRA), REPAIR, (), ("numpy",), "numpy 2.0 h_0 is not in the"),
        (
            {**_installed(*CONDA_LOCK), "pytorch": InstalledPackage(
                "pytorch", "2.7.1", PYTORCH.build, "https://conda.anaconda.org/x.conda")},
            REPAIR, ("pytorch",), (), "came from https://conda.anaconda.org/x.conda",
        ),
        (  # the same file from a fallback is the lock's
            {**_installed(PYTHON, CUDA_VERSION), "pytorch": InstalledPackage(
                "pytorch", "2.7.1", PYTORCH.build, "https://fallback.example/pytorch.conda")},
            OK, (), (), None,
        ),
    ],
)  # fmt: skip
def test_the_env_must_hold_exactly_its_lock(installed, action, install, remove, problem):
    diff = lock_diff(CONDA_LOCK, installed, "conda", ["https://fallback.example/pytorch.conda"])
    assert (diff.action, diff.install, diff.remove) == (action, install, remove)
    assert problem is None or any(problem in line for line in diff.problems), diff.problems


def test_a_venv_matches_by_name_and_version_and_keeps_its_own_pip():
    venv = {
        "torch": InstalledPackage("torch", "2.9.1+cu126", None, None),
        "triton": InstalledPackage("triton", "3.5.1", None, None),
        "pip": InstalledPackage("pip", "23.0.1", None, None),
        "setuptools": InstalledPackage("setuptools", "66.1.1", None, None),
    }
    assert lock_diff([TORCH_WHEEL, TRITON], venv, "pip").action == OK
    relabelled = {**venv, "torch": InstalledPackage("torch", "2.9.1+cpu", None, None)}
    diff = lock_diff([TORCH_WHEEL, TRITON], relabelled, "pip")
    assert (diff.action, diff.install) == (REPAIR, ("torch",))
    extra = {**venv, "requests": InstalledPackage("requests", "2.32", None, None)}
    assert lock_diff([TORCH_WHEEL, TRITON], extra, "pip").remove == ("requests",)
    assert lock_diff([TORCH_WHEEL], {}, "pip", foreign=True).action == REPLACE


# ---- the index -----------------------------------------------------------------------------------


def _entry(hosts=("lab01", "lab04"), glibc="2.36") -> LockEntry:
    lock = lock_class(_p(host("570.86", "12.8", H100), "2.7.1"))
    files = {
        f"{lock.id}/{name}": render_explicit(lock.id, lock, CONDA_LOCK, kind)
        for kind, name in EXPLICIT_FILES.items()
    }
    return LockEntry(
        lock=lock, created="2026-11-29T10:00:00+00:00", solver="py-rattler 0.28.0",
        mirror="tuna (https://mirrors.tuna.tsinghua.edu.cn)", sources=lock.channels, hosts=hosts,
        files=files, glibc=glibc, virtual=tuple(virtual_packages(lock, glibc)), packages=3,
    )  # fmt: skip


def test_the_index_records_inputs_time_mirror_channels_hosts_and_file_digests():
    entry = _entry()
    text = render_index([entry])
    for needle in (
        "version: 1",
        f"  {entry.id}:",
        "created: '2026-11-29T10:00:00+00:00'",
        "solver: py-rattler 0.28.0",
        "mirror: tuna (https://mirrors.tuna.tsinghua.edu.cn)",
        "- __cuda=12.6=0",
        "- lab04",
        f"{entry.id}/explicit-sha256.txt: {_h(entry.files[f'{entry.id}/explicit-sha256.txt'])}",
    ):
        assert needle in text
    parsed = parse_index(text, entry.files.get)
    assert parsed[entry.id] == entry
    assert parsed[entry.id].packages_for() == conda_packages(
        {k: entry.files[f"{entry.id}/{n}"] for k, n in EXPLICIT_FILES.items()}
    )
    assert parsed[entry.id].file_for("26.7.1").endswith("explicit-sha256.txt")
    assert parsed[entry.id].file_for("4.14.0").endswith("explicit-md5.txt")


def test_a_lock_file_changed_after_the_index_was_written_is_refused():
    entry = _entry()
    text = render_index([entry])
    tampered = {**entry.files}
    path = f"{entry.id}/explicit-md5.txt"
    tampered[path] = tampered[path].replace(PYTHON.md5, "0" * 32)
    with pytest.raises(LockError, match="was changed after it was made"):
        parse_index(text, tampered.get)
    with pytest.raises(LockError, match="is missing"):
        parse_index(text, {}.get)
    with pytest.raises(LockError, match="version 1"):
        parse_index("version: 7\n", {}.get)


def test_a_lock_is_usable_by_a_host_of_its_class_with_its_glibc_or_newer():
    entry = _entry(glibc="2.31")
    assert usable(entry, entry.lock, "2.36") is None
    assert usable(entry, entry.lock, None) is None
    assert "solved for glibc 2.31 and newer" in usable(entry, entry.lock, "2.28")
    assert usable(None, entry.lock, "2.36").startswith(f"no lock for class {entry.id}")


def test_pip_entries_name_their_target_and_the_requirements_file():
    lock = lock_class(_p(host("570.86", "12.8", H100, python="3.11"), "2.9.1", installer="pip"))
    files = {f"{lock.id}/{REQUIREMENTS_FILE}": render_requirements(lock.id, lock, [TORCH_WHEEL])}
    entry = LockEntry(lock, "t", "uv 0.13.9", "tuna", lock.endpoints, ("lab07",), files,
                      "2.36", target="x86_64-manylinux_2_36", packages=1)  # fmt: skip
    text = render_index([entry])
    assert "python_platform: x86_64-manylinux_2_36" in text
    parsed = parse_index(text, files.get)[entry.id]
    assert parsed.packages_for() == [TORCH_WHEEL]
    assert parsed.file_for(None).endswith(REQUIREMENTS_FILE)
