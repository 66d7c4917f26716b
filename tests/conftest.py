"""Fixtures shared by test modules: the simulated mirror on its own, without a lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from labtorch_sim.mirror import start_mirror, stop_mirror
from labtorch_sim.mirror_content import build_mirror_content


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The content, built once per session: a second build sees the stamp and does nothing."""
    path = tmp_path_factory.getbasetemp() / "mirror-root"
    build_mirror_content(path)
    return path


@pytest.fixture(scope="module")
def mirror(root: Path, tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("mirror-state")
    process = start_mirror(root, state)
    yield process, state
    stop_mirror(state)
