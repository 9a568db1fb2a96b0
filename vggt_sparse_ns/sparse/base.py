"""The global-attention seam: a frame layout, a strategy, and the per-scene plan it prepares.

A strategy is a small frozen dataclass (its settings). Before the first global layer the
aggregator calls ``strategy.prepare(layout, patch_tokens)`` once per scene; the returned plan
holds any per-scene state (a frame graph, block masks) and is called as
``plan(q, k, v, layer)`` by every global block. Blocks never see which strategy runs.

To bound memory, a block may attend its queries a range of frames at a time: it then calls
``plan(q_chunk, k, v, layer, query_frames=slice(first, stop))`` with the queries of frames
[first, stop) only and the keys and values of all frames, and the plan returns the output of those
queries: the same rows as the whole-sequence call's (``attends_query_chunks`` says a plan can).
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
    """Per-scene attention, called by each global block with q [B, heads, S*T, head_dim] (or, with
    ``query_frames``, the queries of those frames only: [B, heads, (stop - first) * T, head_dim]) and
    k, v [B, heads, S*T, head_dim]; returns an output shaped like q."""

    graphs: list[FrameGraph]
    """The frame graph of each scene the plan restricts attention to; empty when it restricts none."""
    attends_query_chunks: bool
    """Whether the plan takes ``query_frames`` (a chunk's output then equals those rows of the whole call's)."""

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int, query_frames: slice | None = None) -> Tensor: ...

    def summary(self) -> dict[str, Any]:
        """Strategy name and statistics (e.g. the frame graph's), reported with predictions."""
        ...


class GlobalAttention(Protocol):
    """A global-attention strategy: prepares a plan for one scene."""

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor) -> AttentionPlan:
        """patch_tokens: the patch-embed ViT's normalised patch tokens [B, S, P, C]; where the frames are shared
        out between processes, their GeM descriptors [B, S, D] (distributed/attention.py)."""
        ...
