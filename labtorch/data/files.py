"""Loading the YAML data files shipped in ``labtorch/data`` with errors that name file and key.

Every problem in a data file is reported as a :class:`DataError` that carries the file and the
dotted key, so that whoever edits the data after a PyTorch release knows where to look.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

DATA_DIR = Path(__file__).parent

T = TypeVar("T")

# libyaml's loader, where PyYAML was built with it, parses YAML several times faster.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class DataError(ValueError):
    """A data file is unreadable or does not match its schema."""

    def __init__(self, file: str | Path, key: str, problem: str) -> None:
        self.file = str(file)
        self.key = key
        self.problem = problem
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Node:
    """A value read from a data file, with the file and the dotted key it was found under."""

    file: str
    key: str
    value: Any

    def error(self, problem: str) -> DataError:
        return DataError(self.file, self.key, problem)

    def child(self, key: str | int, value: Any) -> Node:
        path = f"{self.key}.{key}" if self.key else str(key)
        return Node(self.file, path, value)

    def expect(self, kind: type[T] | tuple[type, ...], what: str) -> T:
        # YAML booleans are ints in Python; a bool where a number is wanted is a typo.
        if not isinstance(self.value, kind) or (
            isinstance(self.value, bool) and kind not in (bool, (bool,))
        ):
            raise self.error(f"expected {what}, found {self.value!r}")
        return self.value

    def mapping(self, allowed: set[str] | None = None, required: set[str] = frozenset()) -> None:
        """Check that this node is a mapping with only ``allowed`` keys and all ``required``."""
        value = self.expect(dict, "a mapping")
        for key in value:
            if not isinstance(key, str):
                raise self.error(f"key {key!r} must be a string (quote it in the YAML)")
        if allowed is not None:
            unknown = sorted(set(value) - allowed)
            if unknown:
                raise self.error(
                    f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
                )
        missing = sorted(required - set(value))
        if missing:
            raise self.error(f"missing key(s) {', '.join(missing)}")

    def items(self) -> Iterator[tuple[str, Node]]:
        for key, value in self.expect(dict, "a mapping").items():
            yield key, self.child(key, value)

    def elements(self) -> Iterator[Node]:
        for index, value in enumerate(self.expect(list, "a list")):
            yield self.child(index, value)

    def get(self, key: str, default: Any = None) -> Node:
        return self.child(key, self.expect(dict, "a mapping").get(key, default))

    def __getitem__(self, key: str) -> Node:
        mapping = self.expect(dict, "a mapping")
        if key not in mapping:
            raise self.error(f"missing key {key}")
        return self.child(key, mapping[key])

    def text(self) -> str:
        return self.expect(str, "a string")

    def optional_text(self) -> str | None:
        return None if self.value is None else self.text()

    def text_list(self) -> list[str]:
        return [element.text() for element in self.elements()]


def load_data_file(path: str | Path) -> Node:
    """Read one YAML file and return its root node; a missing or malformed file is a DataError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(path, "", f"cannot read the file: {exc.strerror}") from exc
    try:
        value = yaml.load(text, Loader=YAML_LOADER)
    except yaml.YAMLError as exc:
        raise DataError(path, "", f"not valid YAML: {exc}") from exc
    return Node(str(path), "", value)


def packaged_data_file(name: str) -> Path:
    return DATA_DIR / name
