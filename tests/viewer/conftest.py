"""Fixtures for viewer tests: synthetic output folders and free local ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from synthetic_reconstruction import SyntheticSpec, write_synthetic_output


@pytest.fixture(scope="session")
def synthetic_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 cameras on a circle around a striped sphere, 5,000 points with confidences, a ring graph, a summary."""
    return write_synthetic_output(tmp_path_factory.mktemp("synthetic") / "output", SyntheticSpec())


@pytest.fixture
def make_output(tmp_path: Path):
    """Writes a synthetic output with the given spec fields into a fresh folder."""

    def make(**spec_fields) -> Path:
        return write_synthetic_output(tmp_path / "output", SyntheticSpec(**spec_fields))

    return make


@pytest.fixture
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
