"""Re-derive from the stored data what must hold across it, so that the next release's data is
checked, not typed.

Each test states a rule of the build matrix's history (with its source) and checks every
release, variant and build against it. A change between neighbouring releases that no rule
explains must be entered in ``ARCH_CHANGES`` with its source, or it fails here.
"""

from __future__ import annotations

import itertools

import pytest
from packaging.version import Version

from labtorch.data.compat import CPU, ArchList, cuda_key, cuda_of_variant, driver_key, load_compat
from labtorch.data.gpu_catalog import gpu_catalog
from labtorch.data.gpus import ComputeCapability

COMPAT = load_compat()
RELEASES = list(COMPAT.releases.values())
NEIGHBOURS = list(itertools.pairwise(RELEASES))


def cc(text: str) -> ComputeCapability:
    return ComputeCapability.parse(text)


def _all_arch_lists():
    """Every arch list in the data, with where it is and the CUDA version it was built with."""
    for release in RELEASES:
        for variant, arch in release.variants.items():
            yield f"{release.line} {variant}", cuda_of_variant(variant), arch
        for variant, arch in release.windows_variants.items():
            yield f"{release.line} win-64 {variant}", cuda_of_variant(variant), arch
        for variant, arch in release.aarch64_variants.items():
            yield f"{release.line} aarch64 {variant}", cuda_of_variant(variant), arch
        if release.conda_pytorch:
            for variant, arch in release.conda_pytorch.arch.items():
                yield f"{release.line} pytorch-channel {variant}", cuda_of_variant(variant), arch
        if release.conda_forge:
            for patch, groups in release.conda_forge.builds.items():
                for group in groups:
                    for (subdir, variant), arch in group.arch.items():
                        where = f"conda-forge {patch} {subdir} {variant}"
                        yield where, cuda_of_variant(variant), arch
                    for variant, arch in group.tegra.items():
                        yield f"conda-forge {patch} tegra {variant}", cuda_of_variant(variant), arch
    for cuda, arch in COMPAT.conda_forge.arch.items():
        yield f"conda-forge CUDA {cuda}", cuda, arch


ARCH_LISTS = list(_all_arch_lists())


# ------------------------------------------------------------ drivers


def test_every_cuda_version_in_the_data_has_driver_floors():
    used = {cuda for _, cuda, _ in ARCH_LISTS}
    for release in RELEASES:
        if release.conda_forge:
            for subdir_variants in release.conda_forge.variants.values():
                used.update(cuda_of_variant(v) for v in subdir_variants)
    for cuda in used:
        floor = COMPAT.cuda[cuda]
        assert floor.minor_compat["linux"] and floor.full["linux"], cuda
        assert floor.minor_compat["windows"], cuda


def test_driver_floors_grow_with_the_cuda_version():
    ordered = sorted(COMPAT.cuda.values(), key=lambda f: cuda_key(f.cuda))
    for floor in ordered:
        # minor-version compatibility never asks for more than full support
        assert driver_key(floor.minor_compat["linux"]) <= driver_key(floor.full["linux"])
    for older, newer in itertools.pairwise(ordered):
        for table in ("minor_compat", "full"):
            low, high = getattr(older, table)["linux"], getattr(newer, table)["linux"]
            assert driver_key(low) <= driver_key(high), (older.cuda, newer.cuda, table)
        # one minor-compat floor per CUDA major (NVIDIA Table 1 [S11])
        if older.cuda.split(".")[0] == newer.cuda.split(".")[0]:
            assert older.minor_compat == newer.minor_compat


# ------------------------------------------------------------ arch lists


@pytest.mark.parametrize(("where", "cuda", "arch"), ARCH_LISTS, ids=[a[0] for a in ARCH_LISTS])
def test_arch_lists_follow_cuda_support(where, cuda, arch):
    # CUDA 12 dropped sm_3x; CUDA 13 dropped offline compilation for Maxwell, Pascal and Volta
    # [S14] (torch-matrix.md §2.3 drop timeline).
    floor = {12: cc("5.0"), 13: cc("7.5")}.get(cuda_key(cuda)[0], cc("3.5"))
    assert min(arch.sass) >= floor, where
    # sm_100/sm_120 need CUDA 12.8 (first Blackwell builds: 2.7 cu128); sm_110 needs CUDA 13
    if cuda_key(cuda) < (12, 8):
        assert max(arch.sass) <= cc("9.0"), where
    if cc("11.0") in arch.sass:
        assert cuda_key(cuda) >= (13, 0), where
    if arch.ptx is not None:
        assert arch.ptx in arch.sass, where


@pytest.mark.parametrize(("where", "cuda", "arch"), ARCH_LISTS, ids=[a[0] for a in ARCH_LISTS])
def test_arch_lists_name_real_gpus(where, cuda, arch):
    known = set(gpu_catalog().capabilities.values()) | COMPAT.conda_forge.tegra_capabilities
    assert set(arch.sass) <= known, where


def test_windows_wheels_embed_no_ptx_from_cuda_12_8():
    # PyTorch's Windows CI (.ci/pytorch/windows/cuda12{8,9}.bat, cuda130.bat, cuda_config.bat)
    # never appends +PTX; RELEASE.md: "+PTX available on linux builds only" [S5].
    for release in RELEASES:
        for variant, arch in release.wheel_variants("win-64").items():
            if cuda_key(cuda_of_variant(variant)) >= (12, 8):
                assert arch.ptx is None, (release.line, variant)
        for variant, arch in release.windows_variants.items():
            linux = release.variants[variant]
            assert set(arch.sass) <= set(linux.sass) | {cc("6.1")}, (release.line, variant)


def test_aarch64_wheels_filter_the_x86_only_architectures():
    # aarch64 builds filter out 5.0/6.0/7.0/7.5/8.6 and add 11.0 (Jetson Thor) [S5, S26].
    for release in RELEASES:
        for variant, arch in release.aarch64_variants.items():
            assert not {cc(x) for x in ("5.0", "6.0", "7.0", "7.5", "8.6")} & set(arch.sass)
            assert cc("11.0") in arch.sass, (release.line, variant)


# The arch list of a variant changes between neighbouring releases only as the matrix history
# says (torch-matrix.md §2.3 "Drop / add timeline"); anything else is a typing error.
ARCH_CHANGES = {
    # 2.7 cu128: first Blackwell, no Volta; 2.8 re-adds Volta (#160269), PTX moves to cu129
    ("2.8", "cu128"): {"added": {"7.0"}, "removed": set(), "ptx_after": None},
    # 2.11 drops Volta from cu128 (RFC #172352)
    ("2.11", "cu128"): {"added": set(), "removed": {"7.0"}, "ptx_after": None},
}


@pytest.mark.parametrize(
    ("older", "newer"), NEIGHBOURS, ids=[f"{a.line}->{b.line}" for a, b in NEIGHBOURS]
)
def test_neighbouring_releases_keep_their_arch_lists(older, newer):
    for variant in set(older.variants) & set(newer.variants):
        before, after = older.variants[variant], newer.variants[variant]
        change = ARCH_CHANGES.get((newer.line, variant))
        if change is None:
            assert before == after, (older.line, newer.line, variant, str(before), str(after))
            continue
        added = {str(x) for x in set(after.sass) - set(before.sass)}
        removed = {str(x) for x in set(before.sass) - set(after.sass)}
        assert added == change["added"] and removed == change["removed"], variant
        ptx = change["ptx_after"]
        assert after.ptx == (cc(ptx) if ptx else None), variant


def test_variants_come_and_go_in_cuda_order():
    # Each release's variant set is a window of CUDA versions that moves forward: a CUDA
    # version once dropped never comes back.
    dropped: set[str] = set()
    for older, newer in NEIGHBOURS:
        dropped |= set(older.variants) - set(newer.variants)
        assert not dropped & set(newer.variants), newer.line


def test_pytorch_channel_arch_lists_are_wheel_lists_plus_6_1():
    # conda/pytorch-nightly/build.sh adds 6.1 to the wheels' base list and embeds sm_37 as
    # PTX (3.7+PTX) where the wheels have sm_37 SASS only [S3].
    for release in RELEASES:
        if not release.conda_pytorch:
            continue
        for variant, arch in release.conda_pytorch.arch.items():
            wheel = release.variants[variant]
            assert set(arch.sass) == set(wheel.sass) | {cc("6.1")}, (release.line, variant)
            assert arch.ptx == (cc("3.7") if cc("3.7") in wheel.sass else None)


# ------------------------------------------------------------ conda channels


def test_conda_forge_builds_have_arch_lists_and_driver_data():
    for release in RELEASES:
        builds = release.conda_forge
        if builds is None:
            continue
        for patch, groups in builds.builds.items():
            assert patch in release.patches
            for group in groups:
                for subdir, names in group.subdirs.items():
                    assert CPU in names, (patch, subdir)  # every subdir built has a CPU build
                    for variant in names:
                        if variant == CPU:
                            continue
                        cuda = cuda_of_variant(variant)
                        assert cuda in COMPAT.cuda, (patch, variant)
                        has_arch = cuda in COMPAT.conda_forge.arch or (
                            (subdir, variant) in group.arch
                        )
                        assert has_arch, (patch, subdir, variant)
                if group.tegra:
                    assert "linux-aarch64" in group.subdirs, patch


def test_conda_forge_patches_are_in_order_and_patch_releases():
    for release in RELEASES:
        if release.conda_forge:
            patches = list(release.conda_forge.patches)
            assert patches == sorted(patches, key=Version)
            assert set(patches) <= set(release.patches)


def test_pytorch_channel_has_pytorch_cuda_for_every_variant():
    channel = COMPAT.conda_pytorch_channel
    last = Version(channel.last_release)
    for release in RELEASES:
        if release.conda_pytorch is None:
            assert Version(min(release.patches, key=Version)) > last
            continue
        for variant in release.conda_pytorch.cudnn:
            assert cuda_of_variant(variant) in channel.pytorch_cuda, (release.line, variant)


# ------------------------------------------------------------ releases


def test_releases_move_forward():
    for older, newer in NEIGHBOURS:
        assert older.released < newer.released
        assert cuda_key(older.python_min) <= cuda_key(newer.python_min)
        assert cuda_key(older.python_max) <= cuda_key(newer.python_max)
        assert cuda_key(older.glibc["x86_64"]) <= cuda_key(newer.glibc["x86_64"])
        if older.macos.get("arm64") and newer.macos.get("arm64"):
            assert cuda_key(older.macos["arm64"]) <= cuda_key(newer.macos["arm64"])


def test_companion_versions_follow_the_release():
    # torchvision 0.(15 + minor) pairs with torch 2.minor (0.14 with 1.13); torchaudio follows
    # torch's line up to 2.11, then stays at 2.11.0, its last release [S1, S8, S9].
    for release in RELEASES:
        for version, patch in release.patches.items():
            torch = Version(version)
            if patch.torchvision is not None:
                vision = Version(patch.torchvision)
                expected = 14 if torch.major == 1 else 15 + torch.minor
                assert (vision.major, vision.minor) == (0, expected), version
            if patch.torchaudio is None:
                continue
            audio = Version(patch.torchaudio)
            if torch.major == 1:
                assert (audio.major, audio.minor) == (0, 13), version
            elif torch.minor <= 11:
                assert (audio.major, audio.minor) == (torch.major, torch.minor), version
            else:
                assert patch.torchaudio == "2.11.0", version


def test_pypi_default_is_among_the_newer_variants():
    # PyPI's default is the stable CUDA, never the oldest of three variants [S1, S2].
    for release in RELEASES:
        ordered = sorted(release.variants, key=lambda v: cuda_key(cuda_of_variant(v)))
        assert release.pypi_default in ordered[-2:] or len(ordered) == 2


def test_arch_list_text_round_trips():
    for where, _, arch in ARCH_LISTS:
        assert ArchList.parse(str(arch)) == arch, where
