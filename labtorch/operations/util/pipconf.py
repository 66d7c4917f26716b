"""The pip config labtorch owns: ``[global] index-url``, merged into whatever else the file says.

Wheel variants come from a find-links page passed on the install command line, so a user's own
``find-links`` or ``extra-index-url`` settings are never touched. The file is edited line by
line, so the user's comments and layout stay as they were (configparser would drop them).
"""

from __future__ import annotations

import configparser
import re


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
    have = _as_dict(_parse(current)).get("global", {})
    if current is not None and have.get("index-url") == index_url:
        return None
    return _with_global_index(current or "", index_url)


_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
_INDEX_URL = re.compile(r"^\s*index[-_]url\s*[=:]", re.IGNORECASE)


def _with_global_index(text: str, index_url: str) -> str:
    """``text`` with ``[global] index-url`` set: the key's line replaced where it is, else added
    at the end of ``[global]``, else a ``[global]`` section added at the end."""
    lines = text.splitlines()
    setting = f"index-url = {index_url}"
    section, global_end = None, None
    for number, line in enumerate(lines):
        header = _SECTION.match(line)
        if header:
            section = header.group("name").strip()
        elif section == "global" and _INDEX_URL.match(line):
            lines[number] = setting
            return "\n".join(lines) + "\n"
        if section == "global" and line.strip():
            global_end = number
    if global_end is None:
        lines += [*([""] if lines else []), "[global]", setting]
    else:
        lines.insert(global_end + 1, setting)
    return "\n".join(lines) + "\n"
