"""Defaults named by several layers are defined once, in vggt_sparse_ns/defaults.py, and every layer uses them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import vggt_sparse_ns
from vggt_sparse_ns.defaults import DEFAULT_CHECKPOINT, DEFAULT_MEGALOC_CHECKPOINT, DEFAULT_NEIGHBORS

PACKAGE = Path(vggt_sparse_ns.__file__).parent


@pytest.mark.parametrize("hub_id", ["facebook/VGGT-1B", "gberton/MegaLoc"])
def test_a_default_hub_id_is_written_as_a_string_in_defaults_only(hub_id):
    writers = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if f'"{hub_id}"' in path.read_text() or f"'{hub_id}'" in path.read_text()
    ]
    assert writers == ["defaults.py"]


def test_the_model_the_frame_graph_and_the_command_line_share_the_defaults():
    from vggt_sparse_ns.model import load_pretrained
    from vggt_sparse_ns.pipeline.config import ReconstructionConfig
    from vggt_sparse_ns.sparse import CovisibilityAttention, FrameGraphSettings, load_megaloc

    config = ReconstructionConfig()
    assert config.checkpoint == inspect.signature(load_pretrained).parameters["source"].default == DEFAULT_CHECKPOINT
    assert config.megaloc_checkpoint == inspect.signature(load_megaloc).parameters["source"].default
    assert config.megaloc_checkpoint == DEFAULT_MEGALOC_CHECKPOINT
    assert config.neighbors == FrameGraphSettings().neighbors == CovisibilityAttention().neighbors == DEFAULT_NEIGHBORS
