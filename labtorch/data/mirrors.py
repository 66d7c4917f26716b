"""The mirror catalog: where conda channels, PyPI and the PyTorch wheel indexes live on each mirror.

Read from ``data/mirrors.yaml``; the rules ask it for URLs and it says when a mirror does not
carry what a plan needs (TUNA has no ``nvidia`` channel and no PyTorch wheel indexes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from labtorch.data.files import Node, load_data_file, packaged_data_file

DEFAULTS = "defaults"
UPSTREAM = "upstream"


class NotMirrored(LookupError):
    """The mirror does not carry this channel or index."""


@dataclass(frozen=True)
class WheelIndex:
    """A mirror of download.pytorch.org/whl/<variant>; ``layout`` is ``index`` or ``flat``."""

    url_template: str
    layout: str

    def url(self, variant: str) -> str:
        return self.url_template.format(variant=variant)


@dataclass(frozen=True)
class Mirror:
    name: str
    title: str
    default_channels: tuple[str, ...]
    custom_channels: str | None
    channels: tuple[str, ...]
    pypi: str | None
    pytorch_wheels: WheelIndex | None
    confirmed: bool
    # The directory of the newest Miniforge release: installers and their .sha256 files.
    miniforge: str | None = None

    def channel_url(self, channel: str) -> str:
        """The URL of a named conda channel on this mirror (``defaults``: its first entry)."""
        if channel == DEFAULTS and self.default_channels:
            return self.default_channels[0]
        if self.custom_channels is None or channel not in self.channels:
            raise NotMirrored(f"{self.name} does not mirror the conda channel {channel!r}")
        return f"{self.custom_channels}/{channel}"

    def carries(self, channel: str) -> bool:
        try:
            self.channel_url(channel)
        except NotMirrored:
            return False
        return True


def tuna_layout_mirror(name: str, base_url: str, wheels_url: str | None = None) -> Mirror:
    """A mirror laid out like TUNA under ``base_url`` (a site cache, or the simulated lab's mirror).

    conda channels live under ``anaconda/pkgs`` and ``anaconda/cloud`` (a site mirror is expected to
    carry ``nvidia`` too), PyPI under ``pypi/web/simple``; ``wheels_url`` (with ``{variant}``) is a
    flat find-links mirror of the PyTorch wheel indexes. The Miniforge releases live under
    ``github-release/conda-forge/miniforge``, as TUNA syncs them.
    """
    base = base_url.rstrip("/")
    return Mirror(
        name=name,
        title=f"TUNA-layout mirror at {base}",
        default_channels=tuple(f"{base}/anaconda/pkgs/{repo}" for repo in ("main", "r", "msys2")),
        custom_channels=f"{base}/anaconda/cloud",
        channels=("conda-forge", "pytorch", "pytorch-lts", "nvidia"),
        pypi=f"{base}/pypi/web/simple",
        pytorch_wheels=WheelIndex(wheels_url, "flat") if wheels_url else None,
        confirmed=True,
        miniforge=f"{base}/github-release/conda-forge/miniforge/LatestRelease",
    )


def wheels_only_mirror(name: str, wheels_url: str) -> Mirror:
    """A flat find-links mirror of the PyTorch wheel indexes (``{variant}`` in the URL), no more."""
    return Mirror(
        name=name,
        title=f"PyTorch wheels at {wheels_url}",
        default_channels=(),
        custom_channels=None,
        channels=(),
        pypi=None,
        pytorch_wheels=WheelIndex(wheels_url, "flat"),
        confirmed=True,
    )


@dataclass(frozen=True)
class MirrorCatalog:
    mirrors: dict[str, Mirror]

    def with_mirror(self, mirror: Mirror) -> MirrorCatalog:
        """This catalog plus ``mirror`` (replacing one of the same name)."""
        return MirrorCatalog({**self.mirrors, mirror.name: mirror})

    def __getitem__(self, name: str) -> Mirror:
        try:
            return self.mirrors[name]
        except KeyError:
            raise KeyError(
                f"unknown mirror {name!r}; known mirrors: {', '.join(self.mirrors)}"
            ) from None

    def wheel_mirrors(self) -> list[str]:
        return [name for name, mirror in self.mirrors.items() if mirror.pytorch_wheels]

    def mirror_for_channel(self, channel: str, preferred: str) -> Mirror | None:
        """``preferred`` if it carries ``channel``, else the first confirmed non-upstream mirror."""
        if self[preferred].carries(channel):
            return self[preferred]
        return next(
            (
                mirror
                for mirror in self.mirrors.values()
                if mirror.confirmed and mirror.name != UPSTREAM and mirror.carries(channel)
            ),
            None,
        )


def _mirror(name: str, node: Node) -> Mirror:
    node.mapping(
        {"title", "conda", "pypi", "pytorch_wheels", "confirmed", "miniforge"},
        {"title", "conda", "pypi", "pytorch_wheels", "confirmed"},
    )
    conda = node["conda"]
    default_channels: tuple[str, ...] = ()
    custom_channels = None
    channels: tuple[str, ...] = ()
    if conda.value is not None:
        conda.mapping(
            {"default_channels", "custom_channels", "channels"},
            {"default_channels", "custom_channels", "channels"},
        )
        default_channels = tuple(conda["default_channels"].text_list())
        custom_channels = conda["custom_channels"].text().rstrip("/")
        channels = tuple(conda["channels"].text_list())
    wheels = node["pytorch_wheels"]
    pytorch_wheels = None
    if wheels.value is not None:
        wheels.mapping({"url", "layout"}, {"url", "layout"})
        template = wheels["url"].text()
        if "{variant}" not in template:
            raise wheels["url"].error("the URL must contain {variant}")
        layout = wheels["layout"].text()
        if layout not in ("index", "flat"):
            raise wheels["layout"].error(f"layout must be index or flat, not {layout!r}")
        pytorch_wheels = WheelIndex(template, layout)
    return Mirror(
        name=name,
        title=node["title"].text(),
        default_channels=default_channels,
        custom_channels=custom_channels,
        channels=channels,
        pypi=node["pypi"].optional_text(),
        pytorch_wheels=pytorch_wheels,
        confirmed=node["confirmed"].expect(bool, "true or false"),
        miniforge=node.get("miniforge", None).optional_text(),
    )


def parse_catalog(root: Node) -> MirrorCatalog:
    root.mapping({"mirrors"}, {"mirrors"})
    return MirrorCatalog({name: _mirror(name, node) for name, node in root["mirrors"].items()})


def load_catalog_file(path: Path) -> MirrorCatalog:
    return parse_catalog(load_data_file(path))


@cache
def load_catalog() -> MirrorCatalog:
    """The mirror catalog shipped with labtorch (read once per process)."""
    return load_catalog_file(packaged_data_file("mirrors.yaml"))
