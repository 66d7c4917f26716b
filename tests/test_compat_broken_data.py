"""Every check of the compatibility data's loader that ``test_compat.py``'s table does not reach:
one broken datum each, and the file, key and problem the error must name. (The next release is
typed by hand; each of these is a typo someone will make.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labtorch.data.compat import ArchList, load_compat_files
from labtorch.data.files import DATA_DIR, DataError
from labtorch.data.gpus import ComputeCapability


def _write(tmp_path: Path, edit) -> tuple[Path, Path]:
    releases = yaml.safe_load((DATA_DIR / "releases.yaml").read_text())
    cuda = yaml.safe_load((DATA_DIR / "cuda.yaml").read_text())
    edit(releases, cuda)
    releases_file, cuda_file = tmp_path / "releases.yaml", tmp_path / "cuda.yaml"
    releases_file.write_text(yaml.safe_dump(releases, sort_keys=False))
    cuda_file.write_text(yaml.safe_dump(cuda, sort_keys=False))
    return releases_file, cuda_file


def _in(document: str, *path: str, value):
    """Set ``path`` in the releases (``document`` "r") or cuda ("c") data to ``value``."""

    def edit(releases, cuda):
        target = releases if document == "r" else cuda
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _swap_releases(releases, _cuda):
    lines = releases["releases"]
    releases["releases"] = {
        key: lines[key] for key in ["1.13", "2.0", "2.1", "2.2", "2.4", "2.3", *list(lines)[6:]]
    }


FORGE_271 = ("releases", "2.7", "conda_forge", "2.7.1")
CUDA_12_1 = {
    "minor_compat": {"linux": "525.60.13", "windows": "528.33"},
    "full": {"linux": "530.30.02", "windows": "531.14"},
}


@pytest.mark.parametrize(
    ("edit", "file", "key", "problem"),
    [
        (
            _in("c", "cuda", "12", value=CUDA_12_1),
            "cuda.yaml",
            "cuda.12",
            "a CUDA version must look like 12.1",
        ),
        (
            _in("c", "cuda", "12.1", "unconfirmed", value=["windows"]),
            "cuda.yaml",
            "cuda.12.1",
            "unconfirmed names 'windows', which is not a key here",
        ),
        (
            _in("r", "releases", "2.3", "variants", "cuda121", value="8.0"),
            "releases.yaml",
            "releases.2.3.variants.cuda121",
            "not a PyTorch variant: 'cuda121' (expected cpu or cuXYZ, e.g. cu121)",
        ),
        (
            _in("r", "releases", "2.3", "variants", "cpu", value="8.0"),
            "releases.yaml",
            "releases.2.3.variants.cpu",
            "cpu is implied for every release; list CUDA variants only",
        ),
        (
            _in("r", "releases", "2.3", "patches", value={}),
            "releases.yaml",
            "releases.2.3.patches",
            "a release needs at least one patch release",
        ),
        (
            _in("r", "releases", "2.3", "conda_pytorch", "cudnn", "cu124", value="9.1.0"),
            "releases.yaml",
            "releases.2.3.conda_pytorch.cudnn.cu124",
            "cu124 is not a variant of 2.3",
        ),
        (
            _in("r", "releases", "2.3", "conda_pytorch", "arch", "cu124", value="8.0"),
            "releases.yaml",
            "releases.2.3.conda_pytorch.arch.cu124",
            "cu124 has no cudnn entry",
        ),
        (
            _in("r", *FORGE_271, "0", "linux-64", value=["cpu", "cuda126"]),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1.0.linux-64",
            "not a PyTorch variant: 'cuda126' (expected cpu or cuXYZ, e.g. cu121)",
        ),
        (
            _in("r", *FORGE_271, "0", "arch", value={"linux-64": {"cpu": "8.0"}}),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1.0.arch.linux-64.cpu",
            "cpu has no arch list",
        ),
        (
            _in("r", *FORGE_271, "0", "arch", value={"linux-64": {"cu129": "8.0"}}),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1.0.arch.linux-64.cu129",
            "linux-64 has no cu129 build in this group",
        ),
        (
            _in("r", *FORGE_271, "0", "tegra", value={"cu999": "8.7"}),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1.0.tegra.cu999",
            "conda-forge CUDA 99.9 has no driver data in cuda.yaml",
        ),
        (
            _in("r", *FORGE_271, "first", value={"linux-64": ["cpu"]}),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1.first",
            "a build-number range must look like 0 or 1-4, found 'first'",
        ),
        (
            _in("r", *FORGE_271, value={}),
            "releases.yaml",
            "releases.2.7.conda_forge.2.7.1",
            "list at least one group of builds",
        ),
        (
            _in("r", "releases", "2.3", "unconfirmed", value=["released.month"]),
            "releases.yaml",
            "releases.2.3",
            "unconfirmed marker 'released.month' points nowhere",
        ),
        (
            _in("r", "releases", "2", value={}),
            "releases.yaml",
            "releases.2",
            "a release line must look like 2.3",
        ),
        (
            _in("r", "releases", "2.7", "aarch64", value={"pypi_default": "cu126", "variants": {}}),
            "releases.yaml",
            "releases.2.7.aarch64.pypi_default",
            "cu126 is not among the aarch64 variants",
        ),
        (
            _in("r", "conda_pytorch_channel", "pytorch_build", "cpu", value="py{python}_{colour}"),
            "releases.yaml",
            "conda_pytorch_channel.pytorch_build.cpu",
            "unknown field(s) colour; allowed: number, python",
        ),
        (
            _in("r", "conda_forge", "arch", "99.9", value="8.0"),
            "releases.yaml",
            "conda_forge.arch.99.9",
            "CUDA 99.9 has no driver data in cuda.yaml",
        ),
        (
            _in("r", "conda_forge", "tegra_capabilities", value=["8.7", "orin"]),
            "releases.yaml",
            "conda_forge.tegra_capabilities.1",
            "not a compute capability: 'orin'",
        ),
        (_swap_releases, "releases.yaml", "releases", "list release lines oldest first"),
    ],
)
def test_broken_data_names_file_and_key(tmp_path, edit, file, key, problem) -> None:
    releases_file, cuda_file = _write(tmp_path, edit)
    with pytest.raises(DataError) as caught:
        load_compat_files(releases_file, cuda_file)
    error = caught.value
    assert (Path(error.file).name, error.key, error.problem) == (file, key, problem)


@pytest.mark.parametrize(
    ("names", "sass", "ptx"),
    [
        (["sm_80", "sm_90", "compute_90"], ("8.0", "9.0"), "9.0"),
        # Arch-specific targets run on one GPU only: left out.
        (["sm_90a", "sm_100a", "sm_120", "compute_120"], ("12.0",), "12.0"),
        (["sm_50", "sm_60"], ("5.0", "6.0"), None),
    ],
)
def test_an_arch_list_from_torch_keeps_sass_and_ptx_not_arch_specific_targets(
    names, sass, ptx
) -> None:
    arch = ArchList.from_torch(names)
    assert arch.sass == tuple(ComputeCapability.parse(s) for s in sass)
    assert arch.ptx == (ComputeCapability.parse(ptx) if ptx else None)
