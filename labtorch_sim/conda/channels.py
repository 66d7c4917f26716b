"""Channel names and URLs, resolved as conda's ``conda/models/channel.py`` resolves them.

A channel is a ``location`` (host and path prefix) plus a ``name``: ``-c pytorch`` with
``custom_channels: {pytorch: http://m/anaconda/cloud}`` is location ``m/anaconda/cloud``, name
``pytorch``. Package records keep only URLs, and ``conda list`` turns them back into names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CHANNEL_ALIAS = "https://conda.anaconda.org"
DEFAULT_CHANNELS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")
DEFAULT_CUSTOM_CHANNELS = {"pkgs/pro": "https://repo.anaconda.com"}
DEFAULTS = "defaults"


@dataclass(frozen=True)
class Channel:
    """A parsed channel, the fields of conda's ``Channel.dump()``."""

    scheme: str | None
    location: str | None
    name: str | None

    @property
    def base_url(self) -> str:
        path = "/".join(part for part in (self.location, self.name) if part)
        return f"{self.scheme}://{path}" if self.scheme else path

    def urls(self, subdirs: Iterable[str]) -> list[str]:
        """The repodata directories conda reads for this channel."""
        return [f"{self.base_url}/{subdir}" for subdir in subdirs]

    def dump(self) -> dict[str, str | None]:
        return {
            "auth": None,
            "location": self.location,
            "name": self.name,
            "package_filename": None,
            "platform": None,
            "scheme": self.scheme,
            "token": None,
        }


def _split(url: str) -> tuple[str, str, str]:
    """``(scheme, host[:port], path)`` of a URL, the path without surrounding slashes."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return parts.scheme, host, parts.path.strip("/")


def _has_prefix(path: str, prefix: str) -> bool:
    """Whether ``prefix`` is ``path`` or a leading run of its ``/``-separated segments."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def make_simple_channel(alias: Channel, url: str, name: str | None = None) -> Channel:
    """conda's ``Channel.make_simple_channel``: a configured URL, named by key or by its path."""
    scheme, host, path = _split(url)
    location = "/".join(p for p in (host, path) if p)
    if name:
        return Channel(scheme, location, name.strip("/"))
    if alias.location and _has_prefix(location, alias.location):
        return Channel(scheme, alias.location, location[len(alias.location) :].strip("/"))
    return Channel(scheme, host, path)


@dataclass(frozen=True)
class ChannelConfig:
    """The channel settings of a merged configuration, parsed."""

    alias: Channel
    default_channels: tuple[Channel, ...]
    custom_channels: Mapping[str, Channel]

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ChannelConfig:
        scheme, host, path = _split(str(settings.get("channel_alias", DEFAULT_CHANNEL_ALIAS)))
        alias = Channel(scheme, "/".join(p for p in (host, path) if p), None)
        urls = settings.get("default_channels") or DEFAULT_CHANNELS
        defaults = tuple(make_simple_channel(alias, str(url)) for url in urls)
        configured = settings.get("custom_channels") or DEFAULT_CUSTOM_CHANNELS
        # conda resolves names of default channels (pkgs/main) like custom channels.
        custom = {channel.name or "": channel for channel in defaults}
        custom |= {k: make_simple_channel(alias, str(v), k) for k, v in configured.items()}
        return cls(alias, defaults, custom)

    def from_value(self, value: str) -> list[Channel]:
        """The channels a ``-c``/``channels:`` entry stands for (``defaults`` is several)."""
        if value == DEFAULTS:
            return list(self.default_channels)
        if "://" in value:
            return [self.from_url(value)]
        if value.startswith("/"):
            return [self.from_url(f"file://{value}")]
        return [self.from_name(value.strip("/"))]

    def from_name(self, name: str) -> Channel:
        """A bare name: under the longest ``custom_channels`` key it starts with, or the alias."""
        for key in sorted(self.custom_channels, key=len, reverse=True):
            if _has_prefix(name, key):
                return replace(self.custom_channels[key], name=name)
        return replace(self.alias, name=name)

    def from_url(self, url: str) -> Channel:
        """A URL, named by the custom channel or alias it lies under (conda's steps 4 to 7)."""
        scheme, host, path = _split(url)
        if not host:
            location, _, name = path.rpartition("/")
            return Channel(scheme, "/" + location, name)
        test_url = f"{host}/{path}".rstrip("/")
        for key in sorted(self.custom_channels, key=len, reverse=True):
            channel = self.custom_channels[key]
            if _has_prefix(test_url, f"{channel.location}/{channel.name}"):
                return Channel(scheme, channel.location, test_url[len(channel.location) + 1 :])
        if self.alias.location and _has_prefix(test_url, self.alias.location):
            return Channel(scheme, self.alias.location, test_url[len(self.alias.location) + 1 :])
        return Channel(scheme, host, path or None)

    def canonical_name(self, channel: Channel) -> str:
        """How conda names a channel in history and tables: ``defaults``, a name, or its URL."""
        if any(channel.name == default.name for default in self.default_channels):
            return DEFAULTS
        name = channel.name or ""
        if channel.location == self.alias.location or any(
            _has_prefix(name, key) for key in self.custom_channels
        ):
            return name
        return channel.base_url

    def expand(self, values: Iterable[str]) -> list[Channel]:
        """Channels of a list of entries, ``defaults`` expanded, duplicates dropped."""
        return list(dict.fromkeys(c for value in values for c in self.from_value(value)))


def record_channel(config: ChannelConfig, url: str) -> Channel:
    """The channel of a package URL ``<channel>/<subdir>/<file>``."""
    return config.from_url(url.rsplit("/", 2)[0])
