"""vggt/graph.json: the frame graph and the strategy that made it, as the viewer reads them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vggt_sparse_ns.export.run_info import write_graph


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_only_dense_attention_is_written_as_dense(tmp_path: Path) -> None:
    assert read(write_graph(tmp_path, 3, None, "dense")) == {
        "num_frames": 3,
        "strategy": "dense",
        "dense": True,
        "edges": [],
    }
    block_sparse = read(write_graph(tmp_path, 3, None, "block-sparse"))
    assert block_sparse["strategy"] == "block-sparse" and block_sparse["dense"] is False
    assert block_sparse["edges"] == []


def test_a_frame_graph_is_written_with_its_strategy(tmp_path: Path) -> None:
    graph = read(write_graph(tmp_path, 3, np.array([[0, 1], [0, 2]]), "covisibility"))
    assert graph["strategy"] == "covisibility" and graph["dense"] is False
    assert graph["edges"] == [[0, 1], [0, 2]]


def test_edges_outside_the_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        write_graph(tmp_path, 2, np.array([[0, 2]]), "covisibility")
