"""Shared test fixtures: paths to ../shared/fixtures and the tiny VGGT model loaded from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
VGGT_TINY = FIXTURES / "vggt_tiny"


@pytest.fixture(scope="session")
def vggt_tiny_dir() -> Path:
    if not VGGT_TINY.is_dir():
        pytest.fail(f"fixtures not found at {VGGT_TINY}: the repo must sit beside shared/")
    return VGGT_TINY


@pytest.fixture(scope="session")
def vggt_tiny_expected(vggt_tiny_dir: Path) -> dict[str, np.ndarray]:
    with np.load(vggt_tiny_dir / "expected.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def vggt_tiny_config(vggt_tiny_dir: Path) -> dict:
    return json.loads((vggt_tiny_dir / "config.json").read_text())


@pytest.fixture(scope="session")
def vggt_tiny(vggt_tiny_dir: Path):
    """The tiny fixture model, loaded strictly through the public loader, fp32, eval mode."""
    from vggt_sparse_ns.model import load_pretrained

    torch.manual_seed(0)
    return load_pretrained(vggt_tiny_dir, device="cpu")
