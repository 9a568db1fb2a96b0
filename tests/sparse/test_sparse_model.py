"""The strategies inside the tiny VGGT (fp32, CPU): exact where they must be, and really sparse."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from sparse_reference import block_mask, covisibility_mask, masked_attention

from vggt_sparse_ns.sparse import (
    BlockSparseAttention,
    CovisibilityAttention,
    DenseAttention,
    FrameGraph,
    FrameLayout,
    GlobalAttention,
    LayerSelection,
)
from vggt_sparse_ns.sparse.block_selection import BlockGrid, kept_table, select_blocks

PREDICTION_KEYS = ("pose_enc", "extrinsic", "intrinsic", "depth", "depth_conf", "world_points", "world_points_conf")
EXACT = 1e-5
"""Allowed max abs difference, as a fraction of each array's largest magnitude."""
PARTIAL_LISTS = [[], [4], [3], [], [1], [2]]
"""Frames 1-4 and 2-3 (and every frame with frame 0): the mirrored copies 4 and 5 see their originals 0 and 2
only through frame 0 or not at all."""


class RecordingStrategy:
    """Runs ``strategy`` and keeps every global layer's q, k, v and output for checking."""

    def __init__(self, strategy: GlobalAttention) -> None:
        self.strategy = strategy
        self.calls: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.layout: FrameLayout | None = None

    def prepare(self, layout: FrameLayout, patch_tokens: torch.Tensor) -> RecordingStrategy:
        self.layout = layout
        self.plan = self.strategy.prepare(layout, patch_tokens)
        self.attends_query_chunks = self.plan.attends_query_chunks
        return self

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int, query_frames: slice | None = None
    ) -> torch.Tensor:
        out = self.plan(q, k, v, layer, query_frames)
        self.calls.append((layer, q.clone(), k.clone(), v.clone(), out.clone()))
        return out

    def summary(self) -> dict[str, Any]:
        return self.plan.summary()


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def largest_prediction_difference(predictions: dict[str, Any], reference: dict[str, Any]) -> float:
    return max(relative_difference(predictions[key], reference[key]) for key in PREDICTION_KEYS)


@pytest.fixture(scope="module")
def dense_predictions(vggt_tiny, six_frame_scene):
    return vggt_tiny(six_frame_scene, DenseAttention())


def test_complete_graph_reproduces_every_dense_prediction(vggt_tiny, six_frame_scene, dense_predictions):
    predictions = vggt_tiny(six_frame_scene, CovisibilityAttention(graph=FrameGraph.complete(6), max_gathered_frames=8))
    for key in PREDICTION_KEYS:
        assert relative_difference(predictions[key], dense_predictions[key]) <= EXACT, key


def test_partial_graph_matches_the_mask_reference_in_every_global_layer(vggt_tiny, six_frame_scene, dense_predictions):
    recording = RecordingStrategy(CovisibilityAttention(graph=FrameGraph.from_neighbor_lists(PARTIAL_LISTS, 6)))
    predictions = vggt_tiny(six_frame_scene, recording)
    layout = recording.layout
    mask = covisibility_mask(PARTIAL_LISTS, layout.tokens_per_frame, layout.special_tokens)
    assert [call[0] for call in recording.calls] == list(range(vggt_tiny.config.depth))
    for layer, q, k, v, out in recording.calls:
        assert relative_difference(out, masked_attention(q, k, v, mask)) <= EXACT, f"global layer {layer}"
    assert largest_prediction_difference(predictions, dense_predictions) > 1e-2


def test_block_sparse_matches_the_mask_reference_in_every_global_layer(vggt_tiny, six_frame_scene, dense_predictions):
    strategy = BlockSparseAttention(cdf_threshold=0.6, implementation="mask")
    recording = RecordingStrategy(strategy)
    predictions = vggt_tiny(six_frame_scene, recording)
    layout = recording.layout
    grid = BlockGrid.for_layout(layout, strategy.query_block, strategy.key_block, torch.device("cpu"))
    for layer, q, k, v, out in recording.calls:
        reordered_q, reordered_k = (x.index_select(2, grid.order) for x in (q, k))
        kept = kept_table(*select_blocks(reordered_q, reordered_k, grid, None, strategy.cdf_threshold, None))
        mask = block_mask(
            kept, layout.frames, layout.tokens_per_frame, layout.special_tokens, grid.query_block, grid.key_block
        )
        assert relative_difference(out, masked_attention(q, k, v, mask)) <= EXACT, f"global layer {layer}"
    kept_fractions = predictions["attention"]["kept_block_fraction"]
    assert len(kept_fractions) == vggt_tiny.config.depth and max(kept_fractions.values()) < 1.0
    assert largest_prediction_difference(predictions, dense_predictions) > 1e-3


def test_graph_statistics_come_back_with_the_predictions(vggt_tiny, six_frame_scene):
    predictions = vggt_tiny(six_frame_scene, CovisibilityAttention(neighbors=2), outputs=["cameras"])
    attention = predictions["attention"]
    assert attention["strategy"] == "covisibility"
    assert attention["graph_source"] == "patch tokens (GeM)"
    graph = attention["graphs"][0]
    assert graph["frames"] == 6 and graph["degree_min"] >= 2 and graph["dense_cost_fraction"] < 1.0


def test_dense_layers_leave_dense_predictions_unchanged(vggt_tiny, six_frame_scene, dense_predictions):
    every_layer = tuple(range(vggt_tiny.config.depth))
    strategy = LayerSelection(
        CovisibilityAttention(graph=FrameGraph.from_neighbor_lists(PARTIAL_LISTS, 6)), dense_layers=every_layer
    )
    predictions = vggt_tiny(six_frame_scene, strategy)
    assert largest_prediction_difference(predictions, dense_predictions) <= EXACT


def test_a_frame_only_layer_changes_the_predictions(vggt_tiny, six_frame_scene, dense_predictions):
    predictions = vggt_tiny(six_frame_scene, LayerSelection(DenseAttention(), frame_layers=(2,)))
    assert largest_prediction_difference(predictions, dense_predictions) > 1e-3
    assert predictions["attention"]["frame_layers"] == [2]
