"""The global-attention seam: a frame layout, a strategy, and the per-scene plan it prepares.

A strategy is a small frozen dataclass (its settings). Before the first global layer the
aggregator calls ``strategy.prepare(layout, patch_tokens)`` once per scene; the returned plan
holds any per-scene state (a frame graph, block masks) and is called as
``plan(q, k, v, layer)`` by every global block. Blocks never see which strategy runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from torch import Tensor

if TYPE_CHECKING:
    from vggt_sparse_ns.sparse.graph import FrameGraph


@dataclass(frozen=True)
class FrameLayout:
    """The global sequence is ``batch`` scenes of ``frames`` x ``tokens_per_frame`` tokens;
    each frame starts with ``special_tokens`` (camera + registers), then its patch tokens."""

    batch: int
    frames: int
    tokens_per_frame: int
    special_tokens: int

    @property
    def patch_tokens(self) -> int:
        return self.tokens_per_frame - self.special_tokens


class AttentionPlan(Protocol):
    """Per-scene attention, called by each global block with q, k, v [B, heads, S*T, head_dim]."""

    graphs: list[FrameGraph]
    """The frame graph of each scene the plan restricts attention to; empty when it restricts none."""

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int) -> Tensor: ...

    def summary(self) -> dict[str, Any]:
        """Strategy name and statistics (e.g. the frame graph's), reported with predictions."""
        ...


class GlobalAttention(Protocol):
    """A global-attention strategy: prepares a plan for one scene."""

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor) -> AttentionPlan:
        """patch_tokens: the patch-embed ViT's normalised patch tokens [B, S, P, C]; where the frames are shared
        out between processes, their GeM descriptors [B, S, D] (distributed/attention.py)."""
        ...
