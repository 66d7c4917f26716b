"""The mirror catalog: TUNA's layout, what it does not carry, and errors that name file and key."""

from __future__ import annotations

import pytest
import yaml

from labtorch.data.files import DATA_DIR, DataError
from labtorch.data.mirrors import NotMirrored, load_catalog, load_catalog_file

CATALOG = load_catalog()
TUNA = "https://mirrors.tuna.tsinghua.edu.cn/anaconda"


@pytest.mark.parametrize(
    ("mirror", "channel", "url"),
    [
        ("tuna", "conda-forge", f"{TUNA}/cloud/conda-forge"),
        ("tuna", "pytorch", f"{TUNA}/cloud/pytorch"),
        ("tuna", "defaults", f"{TUNA}/pkgs/main"),
        ("bfsu", "conda-forge", "https://mirrors.bfsu.edu.cn/anaconda/cloud/conda-forge"),
        ("sustech", "nvidia", "https://mirrors.sustech.edu.cn/anaconda-extra/cloud/nvidia"),
        ("upstream", "nvidia", "https://conda.anaconda.org/nvidia"),
    ],
)
def test_channel_urls(mirror, channel, url):
    assert CATALOG[mirror].channel_url(channel) == url


@pytest.mark.parametrize(("mirror", "channel"), [("tuna", "nvidia"), ("aliyun", "conda-forge")])
def test_channels_not_mirrored(mirror, channel):
    assert not CATALOG[mirror].carries(channel)
    with pytest.raises(NotMirrored, match=f"does not mirror the conda channel '{channel}'"):
        CATALOG[mirror].channel_url(channel)


def test_tuna_defaults_and_pypi():
    tuna = CATALOG["tuna"]
    assert tuna.default_channels == (f"{TUNA}/pkgs/main", f"{TUNA}/pkgs/r", f"{TUNA}/pkgs/msys2")
    assert tuna.pypi == "https://pypi.tuna.tsinghua.edu.cn/simple"
    assert tuna.pytorch_wheels is None


@pytest.mark.parametrize(
    ("channel", "preferred", "chosen"),
    [
        ("nvidia", "tuna", "sustech"),
        ("conda-forge", "tuna", "tuna"),
        ("nvidia", "upstream", "upstream"),
    ],
)
def test_mirror_for_channel_falls_back_to_a_confirmed_mirror(channel, preferred, chosen):
    assert CATALOG.mirror_for_channel(channel, preferred).name == chosen


def test_wheel_mirrors():
    assert CATALOG.wheel_mirrors() == ["aliyun", "nju", "upstream"]
    assert CATALOG["aliyun"].pytorch_wheels.url("cu126") == (
        "https://mirrors.aliyun.com/pytorch-wheels/cu126/"
    )
    assert CATALOG["nju"].pytorch_wheels.layout == "index"


def test_unknown_mirror_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown mirror 'ustc'; known mirrors: tuna, bfsu"):
        CATALOG["ustc"]


@pytest.mark.parametrize(
    ("path", "value", "key", "problem"),
    [
        (["tuna", "pytorch_wheels"], {"url": "https://x/whl/", "layout": "flat"},
         "mirrors.tuna.pytorch_wheels.url", "must contain {variant}"),
        (["tuna", "pytorch_wheels"], {"url": "https://x/{variant}", "layout": "tree"},
         "mirrors.tuna.pytorch_wheels.layout", "layout must be index or flat"),
        (["tuna", "confirmed"], "yes", "mirrors.tuna.confirmed", "expected true or false"),
        (["tuna", "mirror_of"], "x", "mirrors.tuna", "unknown key(s) mirror_of"),
    ],
)  # fmt: skip
def test_broken_catalog_names_file_and_key(tmp_path, path, value, key, problem):
    data = yaml.safe_load((DATA_DIR / "mirrors.yaml").read_text())
    data["mirrors"][path[0]][path[1]] = value
    broken = tmp_path / "mirrors.yaml"
    broken.write_text(yaml.safe_dump(data))
    with pytest.raises(DataError) as caught:
        load_catalog_file(broken)
    assert caught.value.file == str(broken)
    assert caught.value.key == key
    assert problem in caught.value.problem
