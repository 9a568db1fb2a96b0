"""LayerSelection: chosen global layers run as frame attention or dense attention, the rest as the strategy."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from sparse_reference import masked_attention

from vggt_sparse_ns.layers.implementations import Operation
from vggt_sparse_ns.sparse import (
    CovisibilityAttention,
    DenseAttention,
    FrameGraph,
    FrameLayout,
    LayerSelection,
    SparseAttentionConfig,
    frame_attention,
)
from vggt_sparse_ns.sparse.dense import DENSE_ATTENTION

FRAMES, TOKENS, SPECIAL = 4, 10, 2
LAYOUT = FrameLayout(2, FRAMES, TOKENS, SPECIAL)


class RecordingStrategy:
    """A strategy whose plan returns zeros and records the layers it was called for."""

    def __init__(self) -> None:
        self.layers: list[int] = []
        self.graphs: list = []
        self.attends_query_chunks = False

    def prepare(self, layout: FrameLayout, patch_tokens: torch.Tensor) -> RecordingStrategy:
        return self

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layer: int) -> torch.Tensor:
        self.layers.append(layer)
        return torch.zeros_like(q)

    def summary(self) -> dict[str, Any]:
        return {"strategy": "recording"}


def random_heads() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, 3, FRAMES * TOKENS, 4, generator=generator) for _ in range(3))


def test_frame_attention_equals_a_block_diagonal_mask_reference():
    q, k, v = random_heads()
    frame_of = torch.arange(FRAMES * TOKENS) // TOKENS
    expected = masked_attention(q, k, v, frame_of[:, None] == frame_of[None, :])
    torch.testing.assert_close(frame_attention(q, k, v, TOKENS), expected, rtol=0, atol=1e-6)


def test_layers_are_routed_to_frame_dense_or_the_strategy():
    inner = RecordingStrategy()
    plan = LayerSelection(inner, frame_layers=(0, 3), dense_layers=(1,)).prepare(LAYOUT, torch.zeros(2, FRAMES, 8, 4))
    q, k, v = random_heads()
    outputs = {layer: plan(q, k, v, layer) for layer in range(5)}
    assert inner.layers == [2, 4]
    torch.testing.assert_close(outputs[0], frame_attention(q, k, v, TOKENS), rtol=0, atol=0)
    torch.testing.assert_close(outputs[1], F.scaled_dot_product_attention(q, k, v), rtol=0, atol=0)
    assert not outputs[2].any()
    assert plan.summary() == {
        "strategy": "recording",
        "frame_layers": [0, 3],
        "dense_layers": [1],
        "dense_layers_implementation": "sdpa",
    }


def test_dense_layers_run_the_dense_settings_given(monkeypatch):
    """The dense layers go through the given DenseAttention: its implementation is the one chosen and named."""
    asked = []
    choose = Operation.choose

    def spy(operation: Operation, choice: str, inputs):
        asked.append((operation.name, choice))
        return choose(operation, choice, inputs)

    monkeypatch.setattr(Operation, "choose", spy)
    selection = LayerSelection(RecordingStrategy(), dense_layers=(1,), dense=DenseAttention(implementation="sdpa"))
    plan = selection.prepare(LAYOUT, torch.zeros(2, FRAMES, 8, 4))
    plan(*random_heads(), 1)
    assert asked == [(DENSE_ATTENTION.name, "sdpa")]
    assert plan.summary()["dense_layers_implementation"] == "sdpa"


def test_the_dense_strategy_settings_reach_the_dense_layers_of_any_strategy():
    dense = DenseAttention(implementation="gluon")
    built = SparseAttentionConfig(strategy="covisibility", dense=dense, dense_layers=(0,)).build()
    plan = built.prepare(LAYOUT, torch.zeros(2, FRAMES, 8, 4))
    with pytest.raises(ValueError, match="dense attention cannot run these inputs with gluon: gluon: .*Hopper GPUs"):
        plan(*random_heads(), 0)  # gluon asked for, on CPU: refused with its reasons, not replaced by sdpa


def test_a_layer_cannot_be_both_frame_only_and_dense():
    with pytest.raises(ValueError, match=r"layers \[2\] are both"):
        LayerSelection(RecordingStrategy(), frame_layers=(1, 2), dense_layers=(2,))


def test_negative_layer_indices_are_rejected():
    with pytest.raises(ValueError, match="from 0"):
        LayerSelection(RecordingStrategy(), frame_layers=(-1,))


def test_the_wrapped_plan_reports_the_inner_plans_frame_graphs():
    graph = FrameGraph.from_neighbor_lists([[1], [0, 2], [1]], 3)
    layout = FrameLayout(batch=1, frames=3, tokens_per_frame=7, special_tokens=5)
    plan = LayerSelection(CovisibilityAttention(graph=graph), frame_layers=(0,)).prepare(
        layout, torch.zeros(1, 3, 2, 4)
    )
    assert len(plan.graphs) == 1 and torch.equal(plan.graphs[0].indices, graph.indices)
