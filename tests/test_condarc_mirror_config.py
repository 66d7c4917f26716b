"""operations.util.condarc.mirror_config: the condarc keys that make a plan's channels resolve, the
way conda resolves them, to exactly the URLs the plan pins: named channels through
``custom_channels`` (``<base>/<name>``), ``defaults`` through ``default_channels``. The nvidia
channel, which TUNA does not mirror, comes from SUSTech's ``anaconda-extra/cloud``."""

from __future__ import annotations

import pytest
import yaml

from labtorch.data.compat import load_compat
from labtorch.data.gpus import ComputeCapability, Gpu
from labtorch.data.mirrors import load_catalog, tuna_layout_mirror
from labtorch.facts.nvidia_smi import SmiReport
from labtorch.operations.util.condarc import CondaMirrorConfig, condarc_change, mirror_config
from labtorch.rules.model import HostFacts, Request
from labtorch.rules.plan import plan_for_host

CATALOG = load_catalog()
TUNA = "https://mirrors.tuna.tsinghua.edu.cn/anaconda"
BFSU = "https://mirrors.bfsu.edu.cn/anaconda"
SUSTECH = "https://mirrors.sustech.edu.cn/anaconda-extra/cloud"
A100_550 = HostFacts(
    platform="linux-64",
    glibc="2.35",
    nvidia_smi=SmiReport(
        "550.144.03",
        "12.4",
        (Gpu(0, "NVIDIA A100-SXM4-40GB", capability=ComputeCapability.parse("8.0")),),
        "table",
    ),
)


def plan(catalog=CATALOG, **request):
    return plan_for_host(A100_550, Request(installer="conda", **request), load_compat(), catalog)


def resolve(channel: str, config: CondaMirrorConfig) -> list[str]:
    """Where conda looks for ``channel`` under these keys (conda's channel resolution)."""
    if channel == "defaults":
        return list(config.default_channels)
    return [f"{config.custom_channels[channel].rstrip('/')}/{channel}"]


@pytest.mark.parametrize(
    ("request_", "mirror", "channels", "custom"),
    [
        (  # the article's route: pytorch from TUNA, nvidia from SUSTech, defaults from TUNA
            {"torch": "2.3.1"},
            "tuna",
            ("pytorch", "nvidia", "defaults"),
            {"pytorch": f"{TUNA}/cloud", "nvidia": SUSTECH},
        ),
        (  # the CPU build needs no nvidia channel
            {"torch": "2.3.1", "variant": "cpu"},
            "tuna",
            ("pytorch", "defaults"),
            {"pytorch": f"{TUNA}/cloud"},
        ),
        (  # conda-forge alone
            {"torch": "2.7.1"},
            "tuna",
            ("conda-forge",),
            {"conda-forge": f"{TUNA}/cloud"},
        ),
        (  # BFSU lacks nvidia too: still SUSTech
            {"torch": "2.3.1", "mirror": "bfsu"},
            "bfsu",
            ("pytorch", "nvidia", "defaults"),
            {"pytorch": f"{BFSU}/cloud", "nvidia": SUSTECH},
        ),
    ],
)
def test_mirror_config(request_, mirror, channels, custom):
    p = plan(**request_)
    assert not p.refused, p.reasons
    config = mirror_config(p, CATALOG[mirror], CATALOG)
    assert config.channels == channels == p.channels
    assert config.custom_channels == custom
    assert config.default_channels == CATALOG[mirror].default_channels
    resolved = [url for channel in config.channels for url in resolve(channel, config)]
    assert resolved == list(p.channel_urls)


def test_a_site_mirror_with_tunas_layout_carries_nvidia_itself():
    """A site mirror (torch_mirror_url) is expected to carry nvidia as TUNA lays it out."""
    site = tuna_layout_mirror("site", "http://mirror.lab:8080")
    catalog = CATALOG.with_mirror(site)
    p = plan(catalog, torch="2.3.1", mirror="site")
    config = mirror_config(p, site, catalog)
    assert config.custom_channels == {
        "pytorch": "http://mirror.lab:8080/anaconda/cloud",
        "nvidia": "http://mirror.lab:8080/anaconda/cloud",
    }
    assert [u for c in config.channels for u in resolve(c, config)] == list(p.channel_urls)


def test_the_condarc_written_from_it_resolves_the_same():
    """What labtorch writes, read back as conda reads it, keeps the user's own channel."""
    p = plan(torch="2.3.1")
    config = mirror_config(p, CATALOG["tuna"], CATALOG)
    user = "custom_channels:\n  bioconda: https://bio.example/cloud\nssl_verify: false\n"
    written = yaml.safe_load(condarc_change(user, config))
    assert written["channels"] == ["pytorch", "nvidia", "defaults"]
    assert written["custom_channels"] == {
        "bioconda": "https://bio.example/cloud",
        "pytorch": f"{TUNA}/cloud",
        "nvidia": SUSTECH,
    }
    assert written["ssl_verify"] is False and written["show_channel_urls"] is True
    back = CondaMirrorConfig(
        tuple(written["channels"]), tuple(written["default_channels"]), written["custom_channels"]
    )
    assert [u for c in back.channels for u in resolve(c, back)] == list(p.channel_urls)
