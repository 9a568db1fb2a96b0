"""One configuration for the global attention: the strategy, its settings, and per-layer choices."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from torch import Tensor

from vggt_sparse_ns.sparse.base import GlobalAttention
from vggt_sparse_ns.sparse.block_sparse import BlockSparseAttention
from vggt_sparse_ns.sparse.covisibility import CovisibilityAttention
from vggt_sparse_ns.sparse.dense import DenseAttention
from vggt_sparse_ns.sparse.layer_selection import LayerSelection


@dataclass(frozen=True)
class SparseAttentionConfig:
    """Global attention of the aggregator (each field's docstring is its command-line help)."""

    strategy: Literal["dense", "covisibility", "block-sparse"] = "covisibility"
    """dense: all frames attend to all (exact, O(S^2)). covisibility: each frame attends to its frame-graph neighbours (O(S*k); exact while S <= neighbors + 1). block-sparse: pooled q/k pick the attention blocks to compute, per layer."""
    dense: DenseAttention = field(default_factory=DenseAttention)
    """Settings of dense attention: the dense strategy's, and those of dense-layers under any strategy."""
    covisibility: CovisibilityAttention = field(default_factory=CovisibilityAttention)
    """Settings of the covisibility strategy."""
    block_sparse: BlockSparseAttention = field(default_factory=BlockSparseAttention)
    """Settings of the block-sparse strategy."""
    frame_layers: tuple[int, ...] = ()
    """Global layers (aggregator rounds, from 0) that attend within each frame only."""
    dense_layers: tuple[int, ...] = ()
    """Global layers that stay dense whatever the strategy (with the dense settings above)."""

    def build(self, descriptors: Tensor | None = None) -> GlobalAttention:
        """The strategy to pass to the model. ``descriptors`` [S, D] (e.g. from an image-retrieval
        model) replace the pooled patch tokens wherever a frame graph is built."""
        strategy: GlobalAttention
        if self.strategy == "dense":
            strategy = self.dense
        elif self.strategy == "covisibility":
            strategy = self.covisibility if descriptors is None else replace(self.covisibility, descriptors=descriptors)
        else:
            strategy = self.block_sparse
            source = strategy.covisible_only
            if descriptors is not None and source is not None:
                strategy = replace(strategy, covisible_only=replace(source, descriptors=descriptors))
        if self.frame_layers or self.dense_layers:
            strategy = LayerSelection(strategy, self.frame_layers, self.dense_layers, self.dense)
        return strategy
