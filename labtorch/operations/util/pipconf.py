"""The pip config labtorch owns: ``[global] index-url``, merged into whatever else the file says.

Wheel variants come from a find-links page passed on the install command line, so a user's own
``find-links`` or ``extra-index-url`` settings are never touched.
"""

from __future__ import annotations

import configparser
import io


class PipConfError(ValueError):
    """The existing pip.conf cannot be parsed."""


def _parse(text: str | None) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    if text:
        try:
            parser.read_string(text)
        except configparser.Error as exc:
            raise PipConfError(f"not a valid pip.conf: {exc}") from exc
    return parser


def _as_dict(parser: configparser.ConfigParser) -> dict[str, dict[str, str]]:
    return {section: dict(parser[section]) for section in parser.sections()}


def pip_conf_change(current: str | None, index_url: str) -> str | None:
    """The new pip.conf text, or None when ``current`` already points at ``index_url``."""
    parser = _parse(current)
    before = _as_dict(parser)
    if not parser.has_section("global"):
        parser.add_section("global")
    parser["global"]["index-url"] = index_url
    if current is not None and _as_dict(parser) == before:
        return None
    out = io.StringIO()
    parser.write(out)
    return out.getvalue().rstrip("\n") + "\n"
