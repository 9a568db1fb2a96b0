"""Which blocks of the global attention matrix block-sparse attention computes.

Tokens are reordered so that the special tokens (camera + registers) of all frames come first,
then the patch tokens frame by frame; the reordered sequence is cut into query blocks and key
blocks. Blocks holding any special token are always computed (special tokens attend and are
attended densely). For the other blocks, q and k are mean-pooled per block; each query block's
softmax over its candidate key blocks ranks them, and the most probable are kept until their
mass reaches ``cdf_threshold`` and/or they make up ``top_ratio`` of the candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vggt_sparse_ns.sparse.base import FrameLayout
from vggt_sparse_ns.sparse.graph import FrameGraph

SELECTION_CHUNK_ELEMENTS = 1 << 24
"""Block scores are ranked this many at a time (bounds the selection's memory)."""
FORCED = 2.0
"""Rank value of always-kept blocks: above any probability."""
EXCLUDED = -1.0
"""Rank value of non-candidate blocks: below any probability."""


@dataclass(frozen=True)
class BlockGrid:
    """The reordered token sequence of one layout and its block grid."""

    order: Tensor
    """[L] original token index of each reordered position (special tokens first)."""
    inverse: Tensor
    """[L] reordered position of each original token."""
    query_block: int
    key_block: int
    special: int
    """Number of special tokens, S * special_tokens: reordered positions [0, special)."""
    frame_of_position: Tensor
    """[L] frame of each reordered position."""

    @classmethod
    def for_layout(cls, layout: FrameLayout, query_block: int, key_block: int, device: torch.device) -> BlockGrid:
        frames, tokens, special = layout.frames, layout.tokens_per_frame, layout.special_tokens
        frame_starts = torch.arange(frames, device=device)[:, None] * tokens
        special_tokens = (frame_starts + torch.arange(special, device=device)).flatten()
        patch_tokens = (frame_starts + torch.arange(special, tokens, device=device)).flatten()
        order = torch.cat((special_tokens, patch_tokens))
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=device)
        return cls(order, inverse, query_block, key_block, frames * special, order // tokens)

    @property
    def length(self) -> int:
        return self.order.numel()

    @property
    def query_blocks(self) -> int:
        return math.ceil(self.length / self.query_block)

    @property
    def key_blocks(self) -> int:
        return math.ceil(self.length / self.key_block)

    @property
    def dense_query_blocks(self) -> int:
        """Query blocks [0, this) hold special tokens and attend to every key block."""
        return math.ceil(self.special / self.query_block)

    @property
    def dense_key_blocks(self) -> int:
        """Key blocks [0, this) hold special tokens and are attended by every query block."""
        return math.ceil(self.special / self.key_block)

    def covisible_blocks(self, graph: FrameGraph) -> Tensor:
        """[nq, nk] bool: block pairs that hold tokens of a frame pair that may attend (the same
        frame, frame 0 on either side, or graph neighbours)."""
        frames = graph.frames
        device = self.order.device
        allowed = graph.with_reference_edges().adjacency() | torch.eye(frames, dtype=torch.bool, device=device)

        def incidence(block: int, blocks: int) -> Tensor:
            table = torch.zeros(blocks, frames, device=device)
            table[torch.arange(self.length, device=device) // block, self.frame_of_position] = 1.0
            return table

        query_frames = incidence(self.query_block, self.query_blocks)
        key_frames = incidence(self.key_block, self.key_blocks)
        return (query_frames @ allowed.float() @ key_frames.T) > 0


def pool_blocks(x: Tensor, block: int) -> Tensor:
    """Mean of x [B, H, L, D] over consecutive blocks of ``block`` tokens (the last may be shorter) -> fp32."""
    length = x.shape[2]
    whole = length // block
    parts = [x[:, :, : whole * block].unflatten(2, (whole, block)).sum(3, dtype=torch.float32) / block]
    if length > whole * block:
        parts.append(x[:, :, whole * block :].sum(2, keepdim=True, dtype=torch.float32) / (length - whole * block))
    return torch.cat(parts, dim=2)


def select_blocks(
    q: Tensor,
    k: Tensor,
    grid: BlockGrid,
    candidates: Tensor | None,
    cdf_threshold: float | None,
    top_ratio: float | None,
) -> tuple[Tensor, Tensor]:
    """Kept key blocks per (scene, head, query block), from reordered q, k [B, H, L, D].

    candidates: [B, nq, nk] bool or None (all). Returns (counts [B, H, nq] int32, indices
    [B, H, nq, nk] int32) where indices[..., :count] are the kept key blocks: the dense
    (special) ones first, then by decreasing pooled probability, ties to the lower block.
    """
    batch, heads, _, head_dim = q.shape
    pooled_q = pool_blocks(q, grid.query_block)
    pooled_k = pool_blocks(k, grid.key_block)
    key_blocks = grid.key_blocks
    dense_keys = torch.arange(key_blocks, device=q.device) < grid.dense_key_blocks
    counts = torch.empty(batch, heads, grid.query_blocks, dtype=torch.int32, device=q.device)
    indices = torch.empty(batch, heads, grid.query_blocks, key_blocks, dtype=torch.int32, device=q.device)
    rows_per_chunk = max(1, SELECTION_CHUNK_ELEMENTS // (batch * heads * key_blocks))
    for start in range(0, grid.query_blocks, rows_per_chunk):
        rows = slice(start, min(start + rows_per_chunk, grid.query_blocks))
        is_candidate = ~dense_keys.expand(batch, 1, rows.stop - rows.start, key_blocks)
        if candidates is not None:
            is_candidate = is_candidate & candidates[:, None, rows]
        scores = pooled_q[:, :, rows] @ pooled_k.transpose(-1, -2) / math.sqrt(head_dim)
        probabilities = scores.masked_fill(~is_candidate, float("-inf")).softmax(-1).nan_to_num(0.0)
        rank = torch.where(is_candidate, probabilities, EXCLUDED).masked_fill(dense_keys, FORCED)
        ranked, order = rank.sort(dim=-1, descending=True, stable=True)
        kept = _kept_candidates(ranked, cdf_threshold, top_ratio)
        row_counts = grid.dense_key_blocks + kept
        dense_rows = torch.arange(rows.start, rows.stop, device=q.device) < grid.dense_query_blocks
        counts[:, :, rows] = torch.where(dense_rows, key_blocks, row_counts).int()
        indices[:, :, rows] = order.int()
    return counts, indices


def _kept_candidates(ranked: Tensor, cdf_threshold: float | None, top_ratio: float | None) -> Tensor:
    """Number of candidates kept per row, from rank values sorted in decreasing order."""
    is_candidate = (ranked >= 0) & (ranked <= 1)
    available = is_candidate.sum(-1)
    kept = available.clone()
    if cdf_threshold is not None:
        probabilities = torch.where(is_candidate, ranked, 0.0)
        mass_before = probabilities.cumsum(-1) - probabilities
        kept = torch.minimum(kept, (is_candidate & (mass_before < cdf_threshold)).sum(-1))
    if top_ratio is not None:
        kept = torch.minimum(kept, torch.ceil(available * top_ratio).long())
    return torch.maximum(kept, available.clamp(max=1))


def kept_table(counts: Tensor, indices: Tensor) -> Tensor:
    """Boolean [B, H, nq, nk] of the kept blocks."""
    positions = torch.arange(indices.shape[-1], device=indices.device)
    kept = positions < counts[..., None]
    return torch.zeros_like(kept).scatter_(-1, indices.long(), kept)
