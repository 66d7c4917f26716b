"""Compute capability by GPU product name, for nvidia-smi outputs that do not report it.

The table lives in ``data/gpus.yaml``. Names are compared after :func:`normalise_gpu_name`, which
drops what nvidia-smi adds around the product across driver eras (the "NVIDIA " prefix, brand
words, board and memory suffixes, laptop and vGPU-profile suffixes). A name the default table cut
short with "..." resolves only when every listed product it could be shares one capability.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from labtorch.data.files import Node, load_data_file, packaged_data_file
from labtorch.data.gpus import ComputeCapability

_CAPABILITY_KEY = re.compile(r"\d+\.\d")
_BRANDS = re.compile(r"^(?:(?:NVIDIA|GEFORCE|TESLA|QUADRO|GRID)(?: |$))+")
_MOBILE = re.compile(r" (?:LAPTOP GPU|WITH MAX-Q DESIGN)$")
# vGPU guests see the profile ("GRID P4-1Q", "NVIDIA A40-48Q"); the board before it is the GPU.
_VGPU_PROFILE = re.compile(r"-\d+[ABCQ]$")
_BOARD_SUFFIX = re.compile(r"(?:[- ](?:PCIE|SXM\d*|FHHL|DGXS|NVL|HBM\d*E?|\d+GB?|LS))+$")
_ELLIPSIS = ("...", "\u2026")


def normalise_gpu_name(name: str) -> str:
    """The product part of an nvidia-smi GPU name, upper-cased.

    ``"Tesla V100S-PCIE-32GB"`` -> ``"V100S"``; ``"NVIDIA H100 80GB HBM3"`` -> ``"H100"``.
    """
    text = " ".join(name.upper().split())
    text = _BRANDS.sub("", text)
    text = _MOBILE.sub("", text)
    text = _VGPU_PROFILE.sub("", text)
    return _BOARD_SUFFIX.sub("", text)


@dataclass(frozen=True)
class GpuCatalog:
    """Product names (normalised) and their compute capability, with where the data came from."""

    source: str
    capabilities: Mapping[str, ComputeCapability]

    def capability_for_name(self, name: str) -> ComputeCapability | None:
        """The capability of the GPU nvidia-smi calls ``name``; ``None`` when not unambiguous."""
        stripped = name.strip()
        for ellipsis in _ELLIPSIS:
            if stripped.endswith(ellipsis):
                return self._capability_for_truncated(stripped[: -len(ellipsis)])
        return self.capabilities.get(normalise_gpu_name(stripped))

    def _capability_for_truncated(self, shown: str) -> ComputeCapability | None:
        stem, complete = _truncated_stem(shown)
        if not stem:
            return None
        if complete:
            found = {
                capability
                for product, capability in self.capabilities.items()
                if product == stem or product.startswith(stem + " ")
            }
        else:
            found = {
                capability
                for product, capability in self.capabilities.items()
                if product.startswith(stem)
            }
        return found.pop() if len(found) == 1 else None


def _truncated_stem(shown: str) -> tuple[str, bool]:
    """The product prefix of a name shown before "...", and whether its model word is complete."""
    words = shown.upper().split()
    if not words:
        return "", False
    # A cut right after a space, or inside a "-PCIE..." suffix, leaves the model word whole.
    complete = shown[-1].isspace()
    model, dash, _ = words[-1].partition("-")
    if dash:
        words[-1] = model
        complete = True
    text = " ".join(words)
    return (normalise_gpu_name(text) if complete else _BRANDS.sub("", text)), complete


def parse_gpu_catalog(root: Node) -> GpuCatalog:
    """Check the catalog's structure and build the lookup table; errors name file and key."""
    root.mapping(allowed={"source", "capabilities"}, required={"source", "capabilities"})
    source = root["source"].text().strip()
    if not source:
        raise root["source"].error("must name where the capabilities come from")
    table = root["capabilities"]
    table.mapping()
    capabilities: dict[str, ComputeCapability] = {}
    for key, names in table.items():
        capability = _capability_key(names, key)
        for entry in names.elements():
            product = normalise_gpu_name(entry.text())
            if not product or entry.text().strip().endswith(_ELLIPSIS):
                raise entry.error(f"not a GPU product name: {entry.value!r}")
            if product in capabilities:
                raise entry.error(f"{entry.value!r} is listed twice (as {product})")
            capabilities[product] = capability
    return GpuCatalog(source, capabilities)


def _capability_key(node: Node, key: str) -> ComputeCapability:
    if not _CAPABILITY_KEY.fullmatch(key):
        raise node.error(f'a capability must be written N.M (e.g. "8.6"), found {key!r}')
    return ComputeCapability.parse(key)


def load_gpu_catalog(path: str | Path) -> GpuCatalog:
    """Read and validate a catalog file (tests pass their own)."""
    return parse_gpu_catalog(load_data_file(path))


@cache
def gpu_catalog() -> GpuCatalog:
    """The catalog shipped with labtorch (read once per process)."""
    return load_gpu_catalog(packaged_data_file("gpus.yaml"))


def capability_for_name(name: str) -> ComputeCapability | None:
    """Compute capability of the GPU nvidia-smi calls ``name``; ``None`` if not known for sure."""
    return gpu_catalog().capability_for_name(name)
