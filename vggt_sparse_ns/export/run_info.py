"""The run's side files in <output>/vggt/: the frame graph of the global attention and the run summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vggt_sparse_ns.export.atomic import write_json_atomic
from vggt_sparse_ns.output_layout import GRAPH_FILE, SUMMARY_FILE


def write_graph(output_dir: Path, num_frames: int, edges: np.ndarray | None, strategy: str) -> Path:
    """vggt/graph.json: {"num_frames": S, "strategy": name, "dense": bool, "edges": [[i, j], ...]} with frame
    indices in transforms.json order. ``edges`` is the frame graph, None for strategies without one (dense
    attention, where every pair attends, and block-sparse, whose blocks are picked per layer); dense is true
    only for dense attention."""
    if edges is not None:
        edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        if edges.size and (edges.min() < 0 or edges.max() >= num_frames):
            raise ValueError(f"graph edges name frames outside [0, {num_frames})")
    data = {
        "num_frames": num_frames,
        "strategy": strategy,
        "dense": strategy == "dense",
        "edges": [] if edges is None else edges.tolist(),
    }
    return write_json_atomic(output_dir / GRAPH_FILE, data)


def write_run_summary(output_dir: Path, summary: Mapping[str, Any]) -> Path:
    """vggt/summary.json: the run summary (numpy values and paths are converted)."""
    return write_json_atomic(output_dir / SUMMARY_FILE, dict(summary))
