"""From the --attention choice and the frame count to a global-attention strategy (vggt_sparse_ns.sparse)."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from vggt_sparse_ns.defaults import DEFAULT_NEIGHBORS
from vggt_sparse_ns.pipeline.config import ReconstructionConfig
from vggt_sparse_ns.sparse import CovisibilityAttention, SparseAttentionConfig
from vggt_sparse_ns.sparse.base import AttentionPlan, FrameLayout, GlobalAttention


def resolve_attention(config: ReconstructionConfig, num_frames: int) -> str:
    """The strategy name that runs: ``auto`` becomes dense up to ``dense_max_frames`` frames, covisibility above."""
    if config.attention != "auto":
        return config.attention
    return "dense" if num_frames <= config.dense_max_frames else "covisibility"


def build_attention(
    config: ReconstructionConfig, num_frames: int, descriptors: Tensor | None = None
) -> GlobalAttention:
    """The strategy for ``num_frames`` frames; ``descriptors`` [S, D] (e.g. MegaLoc's) replace the pooled
    patch tokens wherever a frame graph is built."""
    sparse = SparseAttentionConfig(
        strategy=resolve_attention(config, num_frames),
        covisibility=CovisibilityAttention(neighbors=config.neighbors),
    )
    return sparse.build(descriptors)


def uses_descriptors(config: ReconstructionConfig, num_frames: int) -> bool:
    """Whether the chosen strategy builds a frame graph from per-frame descriptors (covisibility does;
    block-sparse picks its blocks from the attention itself)."""
    return resolve_attention(config, num_frames) == "covisibility"


def unused_settings_warning(config: ReconstructionConfig, num_frames: int) -> str | None:
    """One line naming --descriptors megaloc and a non-default --neighbors when the strategy that runs is not
    covisibility, the only one they configure; None when they take effect (or were left as they are)."""
    strategy = resolve_attention(config, num_frames)
    if strategy == "covisibility":
        return None
    unused = [f"--descriptors {config.descriptors}"] if config.descriptors != "vggt" else []
    unused += [f"--neighbors {config.neighbors}"] if config.neighbors != DEFAULT_NEIGHBORS else []
    if not unused:
        return None
    chosen = f" (--attention auto chose it for {num_frames} frames)" if config.attention == "auto" else ""
    return (
        f"{' and '.join(unused)}: ignored, they apply to covisibility attention, not to {strategy} attention{chosen}."
    )


class PlanRecorder:
    """A strategy that passes ``prepare`` through and keeps the plan, so that the frame graph the plan
    attended over can be exported after the forward pass."""

    def __init__(self, strategy: GlobalAttention) -> None:
        self.strategy = strategy
        self.plan: AttentionPlan | None = None

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor) -> AttentionPlan:
        self.plan = self.strategy.prepare(layout, patch_tokens)
        return self.plan

    def graph_edges(self) -> np.ndarray | None:
        """[E, 2] frame pairs (i < j, sorted) that attend one way or both in the first scene's frame graph, reference edges included; None when the
        plan has no frame graph (dense attention). Sparse plans expose their graphs as ``plan.graphs``."""
        graphs: Any = getattr(self.plan, "graphs", None)
        if not graphs:
            return None
        return graphs[0].with_reference_edges().pairs().cpu().numpy().astype(np.int64)
