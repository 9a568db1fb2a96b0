"""Per-layer choice of attention: chosen global layers run as frame attention or dense attention.

One wrapper composes with any strategy, so no strategy carries its own per-layer switches.
For example, frame attention in the first global layers (which form few cross-view
correspondences) and block-sparse attention only in the middle layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from vggt_sparse_ns.sparse.base import AttentionPlan, FrameLayout, GlobalAttention
from vggt_sparse_ns.sparse.dense import DenseAttention


def frame_attention(q: Tensor, k: Tensor, v: Tensor, tokens_per_frame: int) -> Tensor:
    """Attention within each frame for q, k, v [B, H, S*T, D]: the frame blocks' pattern."""

    def by_frame(x: Tensor) -> Tensor:
        return x.unflatten(2, (-1, tokens_per_frame)).transpose(1, 2).flatten(0, 1)

    batch = q.shape[0]
    out = F.scaled_dot_product_attention(by_frame(q), by_frame(k), by_frame(v))
    return out.unflatten(0, (batch, -1)).transpose(1, 2).flatten(2, 3)


class _LayerSelectionPlan:
    def __init__(self, selection: LayerSelection, layout: FrameLayout, inner: AttentionPlan) -> None:
        self.selection = selection
        self.layout = layout
        self.inner = inner
        self.dense = selection.dense.prepare(layout, None)
        self.graphs = inner.graphs
        self.attends_query_chunks = inner.attends_query_chunks

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int, query_frames: slice | None = None) -> Tensor:
        """The layer's attention, for all query frames or the range ``query_frames`` (q then holds only theirs)."""
        if layer in self.selection.frame_layers:
            tokens = self.layout.tokens_per_frame
            frames = slice(0, self.layout.frames) if query_frames is None else query_frames
            keys = slice(frames.start * tokens, frames.stop * tokens)
            return frame_attention(q, k[:, :, keys], v[:, :, keys], tokens)
        plan = self.dense if layer in self.selection.dense_layers else self.inner
        # The whole-sequence call stays the seam's four arguments (plans that take no range keep working).
        return plan(q, k, v, layer) if query_frames is None else plan(q, k, v, layer, query_frames=query_frames)

    def summary(self) -> dict[str, Any]:
        return {
            **self.inner.summary(),
            "frame_layers": list(self.selection.frame_layers),
            "dense_layers": list(self.selection.dense_layers),
            "dense_layers_implementation": self.dense.summary()["implementation"],
        }


@dataclass(frozen=True)
class LayerSelection:
    """Runs ``strategy`` in every global layer except ``frame_layers`` (attention within each
    frame only) and ``dense_layers`` (attention over all tokens, by ``dense``'s implementation). Layers
    are aggregator round indices, from 0."""

    strategy: GlobalAttention
    frame_layers: tuple[int, ...] = ()
    dense_layers: tuple[int, ...] = ()
    dense: DenseAttention = DenseAttention()
    """The dense attention of ``dense_layers`` (the configured dense strategy's settings)."""

    def __post_init__(self) -> None:
        if any(layer < 0 for layer in (*self.frame_layers, *self.dense_layers)):
            raise ValueError("layer indices count from 0; negative indices are not accepted")
        both = sorted(set(self.frame_layers) & set(self.dense_layers))
        if both:
            raise ValueError(f"layers {both} are both frame-only and dense; choose one per layer")

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor) -> _LayerSelectionPlan:
        return _LayerSelectionPlan(self, layout, self.strategy.prepare(layout, patch_tokens))
