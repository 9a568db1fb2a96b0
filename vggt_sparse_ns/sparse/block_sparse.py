"""Block-sparse global attention: a training-free retrofit after "Faster VGGT with Block-Sparse
Global Attention" (Wang et al., arXiv 2509.07120).

Each global layer predicts, from mean-pooled queries and keys, which blocks of its attention
matrix carry the probability mass, and computes only those (see ``block_selection``). Two
implementations run the same kept-block set (``BLOCK_SPARSE_ATTENTION``): flex, compiled FlexAttention with
a block mask (CUDA), and mask, an explicit boolean mask with SDPA, chunked over query blocks (everywhere;
the reference).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from vggt_sparse_ns.layers.implementations import Implementation, Operation, runs_everywhere
from vggt_sparse_ns.layers.kernels import DeviceCapabilities
from vggt_sparse_ns.sparse.base import FrameLayout
from vggt_sparse_ns.sparse.block_selection import BlockGrid, kept_table, select_blocks
from vggt_sparse_ns.sparse.graph import FrameGraph
from vggt_sparse_ns.sparse.graph_source import FrameGraphSource

MASK_CHUNK_ELEMENTS = 1 << 26
"""The mask implementation builds its boolean mask for this many (query, key) pairs at a time."""


@cache
def _compiled_flex_attention() -> Callable[..., Tensor]:
    """FlexAttention compiled once per process (uncompiled, it materialises every score)."""
    return torch.compile(flex_attention)


def flex_block_mask(grid: BlockGrid, counts: Tensor, indices: Tensor) -> BlockMask:
    """The kept blocks as FlexAttention blocks. They are marked partial, with a mask function that
    drops keys past the sequence end: the last block row and column are cut short whenever the
    length is not a multiple of the block sizes, and the kernel reads full blocks unchecked.
    Only compiled FlexAttention reads block tables; uncompiled, it would attend densely."""
    length = grid.length

    def inside_sequence(batch: Tensor, head: Tensor, q_index: Tensor, kv_index: Tensor) -> Tensor:
        return kv_index < length

    return BlockMask.from_kv_blocks(
        counts,
        indices,
        BLOCK_SIZE=(grid.query_block, grid.key_block),
        mask_mod=inside_sequence,
        seq_lengths=(length, length),
        compute_q_blocks=False,
    )


def flex_block_attention(q: Tensor, k: Tensor, v: Tensor, grid: BlockGrid, counts: Tensor, indices: Tensor) -> Tensor:
    """Compiled FlexAttention over the kept blocks (the CUDA path)."""
    # The kernel's tiles must divide the blocks; its defaults differ per GPU (128 x 128 on Hopper).
    kernel_options = {"BLOCK_M": math.gcd(grid.query_block, 128), "BLOCK_N": math.gcd(grid.key_block, 64)}
    block_mask = flex_block_mask(grid, counts, indices)
    return _compiled_flex_attention()(q, k, v, block_mask=block_mask, kernel_options=kernel_options)


def mask_block_attention(q: Tensor, k: Tensor, v: Tensor, grid: BlockGrid, counts: Tensor, indices: Tensor) -> Tensor:
    """SDPA with an explicit boolean mask of the kept blocks, a few query blocks at a time."""
    keep = kept_table(counts, indices)
    batch, heads, length, _ = q.shape
    key_block_of = torch.arange(length, device=q.device) // grid.key_block
    blocks_per_chunk = max(1, MASK_CHUNK_ELEMENTS // (batch * heads * length * grid.query_block))
    rows_per_chunk = blocks_per_chunk * grid.query_block
    out = torch.empty_like(q)
    for start in range(0, length, rows_per_chunk):
        rows = slice(start, min(start + rows_per_chunk, length))
        query_block_of = torch.arange(rows.start, rows.stop, device=q.device) // grid.query_block
        mask = keep[:, :, query_block_of][..., key_block_of]
        out[:, :, rows] = F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=mask)
    return out


def _flex_reasons(capabilities: DeviceCapabilities) -> list[str]:
    if capabilities.type != "cuda":
        return [f"compiled FlexAttention runs here on CUDA devices, not {capabilities.type}"]
    return []


BlockRun = Callable[[Tensor, Tensor, Tensor, BlockGrid, Tensor, Tensor], Tensor]

BLOCK_SPARSE_ATTENTION = Operation[DeviceCapabilities, BlockRun](
    "block-sparse attention",
    (
        Implementation("flex", flex_block_attention, _flex_reasons),
        Implementation("mask", mask_block_attention, runs_everywhere),
    ),
)
"""The implementations of block-sparse attention, fastest first (``BlockSparseAttention.implementation`` says
what each is)."""

BlockSparseImplementation = Literal["auto", "flex", "mask"]


class _BlockSparsePlan:
    def __init__(
        self, strategy: BlockSparseAttention, grid: BlockGrid, candidates: Tensor | None, graphs: list[FrameGraph]
    ) -> None:
        self.strategy = strategy
        self.grid = grid
        self.candidates = candidates
        self.graphs = graphs
        self.kept_fractions: dict[int, Tensor] = {}
        self.chosen: Implementation | None = None
        self.attends_query_chunks = False
        """Each layer's block selection pools the queries of the whole sequence (special-token blocks hold every
        frame's, and blocks straddle frames), which one chunk's queries cannot give."""

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int, query_frames: slice | None = None) -> Tensor:
        if query_frames is not None:
            raise ValueError("block-sparse attention selects its blocks from all queries: it takes no query_frames")
        grid, strategy = self.grid, self.strategy
        q, k, v = (x.index_select(2, grid.order) for x in (q, k, v))
        counts, indices = select_blocks(q, k, grid, self.candidates, strategy.cdf_threshold, strategy.top_ratio)
        self.kept_fractions[layer] = counts.sum(dtype=torch.float64) / (counts.numel() * grid.key_blocks)
        if self.chosen is None:  # once, at the first layer: every global layer's q, k, v are alike
            self.chosen = BLOCK_SPARSE_ATTENTION.choose(strategy.implementation, DeviceCapabilities.of(q.device))
        out = self.chosen.run(q, k, v, grid, counts, indices)
        return out.index_select(2, grid.inverse)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "strategy": "block-sparse",
            "implementation": self.chosen.name if self.chosen else None,
            "query_block": self.strategy.query_block,
            "key_block": self.strategy.key_block,
            "cdf_threshold": self.strategy.cdf_threshold,
            "top_ratio": self.strategy.top_ratio,
            "kept_block_fraction": {layer: float(value) for layer, value in sorted(self.kept_fractions.items())},
        }
        if self.strategy.covisible_only is not None:
            summary.update(self.strategy.covisible_only.describe())
            summary["graphs"] = [graph.with_reference_edges().stats() for graph in self.graphs]
        return summary


@dataclass(frozen=True)
class BlockSparseAttention:
    """Per global layer, computes only the attention blocks that pooled q/k predict to matter;
    special tokens stay dense. Training-free; cost follows the kept fraction of blocks."""

    query_block: int = 128
    """Query tokens per block (a power of two, at least 16)."""
    key_block: int = 64
    """Key tokens per block (a power of two, at least 16)."""
    cdf_threshold: float | None = 0.9
    """Keep each query block's most probable key blocks until their pooled probability mass reaches this (None: off)."""
    top_ratio: float | None = None
    """Keep at most this fraction of each query block's candidate key blocks (None: off). With both set, the fewer."""
    implementation: BlockSparseImplementation = "auto"
    """auto: the first of flex, mask that can run. flex: compiled FlexAttention over the kept blocks (CUDA). mask: PyTorch's SDPA with an explicit boolean mask (runs everywhere; the reference)."""
    covisible_only: FrameGraphSource | None = None
    """Only blocks between frames that this frame graph links (or the same frame, or frame 0) are candidates."""

    def __post_init__(self) -> None:
        BLOCK_SPARSE_ATTENTION.check_choice(self.implementation)
        for name in ("query_block", "key_block"):
            size = getattr(self, name)
            if size < 16 or size & (size - 1):
                raise ValueError(f"{name} must be a power of two of at least 16, got {size}")
        if self.cdf_threshold is None and self.top_ratio is None:
            raise ValueError("set cdf_threshold and/or top_ratio: without either, no block would be dropped")
        if self.cdf_threshold is not None and not 0.0 < self.cdf_threshold <= 1.0:
            raise ValueError(f"cdf_threshold must be in (0, 1], got {self.cdf_threshold}")
        if self.top_ratio is not None and not 0.0 < self.top_ratio <= 1.0:
            raise ValueError(f"top_ratio must be in (0, 1], got {self.top_ratio}")

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor) -> _BlockSparsePlan:
        grid = BlockGrid.for_layout(layout, self.query_block, self.key_block, patch_tokens.device)
        graphs = self.covisible_only.graphs(patch_tokens) if self.covisible_only is not None else []
        candidates = torch.stack([grid.covisible_blocks(graph) for graph in graphs]) if graphs else None
        return _BlockSparsePlan(self, grid, candidates, graphs)
