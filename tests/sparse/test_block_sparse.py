"""BlockSparseAttention: block selection rules, and both implementations against an explicit-mask reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from sparse_reference import block_mask, covisibility_mask, masked_attention, reordered_positions

from vggt_sparse_ns.sparse import BlockSparseAttention, FrameGraph, FrameGraphSource, FrameLayout
from vggt_sparse_ns.sparse.block_selection import BlockGrid, kept_table, select_blocks
from vggt_sparse_ns.sparse.block_sparse import flex_block_attention, flex_block_mask

FRAMES, TOKENS, SPECIAL, HEADS, HEAD_DIM = 6, 45, 5, 2, 8
QUERY_BLOCK, KEY_BLOCK = 32, 16
TOLERANCE = 1e-5
LAYOUT = FrameLayout(1, FRAMES, TOKENS, SPECIAL)


def random_heads(
    seed: int = 0, device: str = "cpu", head_dim: int = HEAD_DIM
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (1, HEADS, FRAMES * TOKENS, head_dim)
    return tuple(torch.randn(shape, generator=generator).to(device) for _ in range(3))


def grid(layout: FrameLayout = LAYOUT) -> BlockGrid:
    return BlockGrid.for_layout(layout, QUERY_BLOCK, KEY_BLOCK, torch.device("cpu"))


def reference_kept(q, k, strategy_grid: BlockGrid, cdf: float | None, top: float | None, candidates=None):
    reordered_q, reordered_k = (x.index_select(2, strategy_grid.order) for x in (q, k))
    return kept_table(*select_blocks(reordered_q, reordered_k, strategy_grid, candidates, cdf, top))


def test_reordering_puts_every_frames_special_tokens_first():
    positions = reordered_positions(FRAMES, TOKENS, SPECIAL)
    assert torch.equal(grid().inverse, positions)
    assert torch.equal(grid().order[positions], torch.arange(FRAMES * TOKENS))


def probabilities_layout(probabilities: list[float]) -> tuple[torch.Tensor, torch.Tensor, BlockGrid]:
    """One query block of 64 tokens and one key block of 16 per probability, no special tokens;
    q and k are built so that the pooled block softmax equals ``probabilities``."""
    layout = FrameLayout(1, 1, 16 * len(probabilities), 0)
    block_grid = BlockGrid.for_layout(layout, 64, 16, torch.device("cpu"))
    q = torch.zeros(1, 1, layout.tokens_per_frame, 2)
    q[..., 0] = 1.0
    k = torch.zeros_like(q)
    logits = torch.tensor(probabilities).log() * math.sqrt(2)
    k[..., 0] = logits.repeat_interleave(16)
    return q, k, block_grid


@pytest.mark.parametrize(
    ("cdf", "top", "expected"),
    [
        (0.75, None, [0, 1]),  # masses before each block: 0, 0.5, 0.8, 0.95
        (0.85, None, [0, 1, 2]),
        (None, 0.25, [0]),
        (None, 0.5, [0, 1]),
        (0.85, 0.5, [0, 1]),  # both set: the fewer
        (1.0, None, [0, 1, 2, 3]),
    ],
)
def test_kept_key_blocks_follow_the_cumulative_threshold_and_top_ratio(cdf, top, expected):
    q, k, block_grid = probabilities_layout([0.5, 0.3, 0.15, 0.05])
    counts, indices = select_blocks(q, k, block_grid, None, cdf, top)
    assert sorted(indices[0, 0, 0, : counts[0, 0, 0]].tolist()) == expected


def test_blocks_holding_special_tokens_are_always_kept():
    q, k, _ = random_heads()
    kept = reference_kept(q, k, grid(), cdf=0.05, top=None)
    dense_queries, dense_keys = grid().dense_query_blocks, grid().dense_key_blocks
    assert dense_queries >= 1 and dense_keys >= 1
    assert kept[..., :dense_queries, :].all()
    assert kept[..., :dense_keys].all()
    assert not kept.all()


def block_any(token_table: torch.Tensor, query_block: int, key_block: int) -> torch.Tensor:
    """[L, L] bool -> [nq, nk]: whether any token pair of each block pair is set."""
    length = token_table.shape[0]
    rows, cols = math.ceil(length / query_block), math.ceil(length / key_block)
    padded = torch.zeros(rows * query_block, cols * key_block, dtype=torch.bool)
    padded[:length, :length] = token_table
    return padded.view(rows, query_block, cols, key_block).any(3).any(1)


def test_candidate_blocks_are_those_holding_a_covisible_frame_pair():
    lists = [[], [2], [], [], [5], []]
    candidates = grid().covisible_blocks(FrameGraph.from_neighbor_lists(lists, FRAMES))
    frame_sees = covisibility_mask(lists, tokens=1, special=0)
    position = torch.arange(FRAMES * TOKENS)
    patches = TOKENS - SPECIAL
    frame_at = torch.where(position < FRAMES * SPECIAL, position // SPECIAL, (position - FRAMES * SPECIAL) // patches)
    expected = block_any(frame_sees[frame_at[:, None], frame_at[None, :]], QUERY_BLOCK, KEY_BLOCK)
    assert torch.equal(candidates, expected)
    assert not candidates.all()


def test_only_candidate_or_special_blocks_are_kept():
    q, k, _ = random_heads()
    candidates = grid().covisible_blocks(FrameGraph.from_neighbor_lists([[], [2], [], [], [5], []], FRAMES))
    kept = reference_kept(q, k, grid(), cdf=1.0, top=None, candidates=candidates[None])
    dense = torch.zeros_like(candidates)
    dense[: grid().dense_query_blocks] = True
    dense[:, : grid().dense_key_blocks] = True
    assert torch.equal(kept[0, 0], candidates | dense)


def test_selection_is_deterministic():
    q, k, _ = random_heads()
    first = select_blocks(q, k, grid(), None, 0.6, 0.5)
    second = select_blocks(q.clone(), k.clone(), grid(), None, 0.6, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("layer", [0, 3])
def test_mask_implementation_equals_the_explicit_mask_reference(layer):
    q, k, v = random_heads(seed=layer)
    strategy = BlockSparseAttention(QUERY_BLOCK, KEY_BLOCK, cdf_threshold=0.5, implementation="mask")
    plan = strategy.prepare(LAYOUT, torch.zeros(1, FRAMES, TOKENS - SPECIAL, 4))
    out = plan(q, k, v, layer)
    kept = reference_kept(q, k, grid(), cdf=0.5, top=None)
    expected = masked_attention(q, k, v, block_mask(kept, FRAMES, TOKENS, SPECIAL, QUERY_BLOCK, KEY_BLOCK))
    torch.testing.assert_close(out, expected, rtol=0, atol=TOLERANCE)
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() > 1e-2
    assert 0.0 < plan.summary()["kept_block_fraction"][layer] < 1.0


def test_flex_block_mask_holds_exactly_the_kept_blocks():
    q, k, _ = random_heads()
    reordered_q, reordered_k = (x.index_select(2, grid().order) for x in (q, k))
    counts, indices = select_blocks(reordered_q, reordered_k, grid(), None, 0.5, None)
    mask = flex_block_mask(grid(), counts, indices)
    assert torch.equal(mask.to_dense().bool(), kept_table(counts, indices))
    assert mask.shape[-2:] == (FRAMES * TOKENS, FRAMES * TOKENS)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA path; compiling it for CPU takes 20-45 s")
@pytest.mark.parametrize(("query_block", "key_block"), [(QUERY_BLOCK, KEY_BLOCK), (128, 64)])
def test_compiled_flex_implementation_equals_the_explicit_mask_reference(query_block, key_block):
    """The FlexAttention path as it runs on CUDA (compiled; the compile itself takes a while), at the
    model's head dimension (compiled FlexAttention needs at least 16)."""
    q, k, v = random_heads(device="cuda", head_dim=64)
    device_grid = BlockGrid.for_layout(LAYOUT, query_block, key_block, torch.device("cuda"))
    reordered = [x.index_select(2, device_grid.order) for x in (q, k, v)]
    counts, indices = select_blocks(reordered[0], reordered[1], device_grid, None, 0.5, None)
    out = flex_block_attention(*reordered, device_grid, counts, indices).index_select(2, device_grid.inverse)
    mask = block_mask(kept_table(counts, indices).cpu(), FRAMES, TOKENS, SPECIAL, query_block, key_block)
    expected = masked_attention(q.cpu(), k.cpu(), v.cpu(), mask)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=1e-4)


def test_covisible_only_restricts_the_plan_and_reports_the_graph():
    lists = [[], [2], [], [], [5], []]
    source = FrameGraphSource(graph=FrameGraph.from_neighbor_lists(lists, FRAMES))
    strategy = BlockSparseAttention(
        QUERY_BLOCK, KEY_BLOCK, cdf_threshold=1.0, implementation="mask", covisible_only=source
    )
    q, k, v = random_heads()
    plan = strategy.prepare(LAYOUT, torch.zeros(1, FRAMES, TOKENS - SPECIAL, 4))
    out = plan(q, k, v, 0)
    candidates = grid().covisible_blocks(source.graph)[None]
    kept = reference_kept(q, k, grid(), cdf=1.0, top=None, candidates=candidates)
    expected = masked_attention(q, k, v, block_mask(kept, FRAMES, TOKENS, SPECIAL, QUERY_BLOCK, KEY_BLOCK))
    torch.testing.assert_close(out, expected, rtol=0, atol=TOLERANCE)
    assert plan.summary()["graphs"][0]["frames"] == FRAMES


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"query_block": 100}, "power of two"),
        ({"key_block": 8}, "power of two"),
        ({"cdf_threshold": None, "top_ratio": None}, "cdf_threshold and/or top_ratio"),
        ({"cdf_threshold": 1.5}, "cdf_threshold"),
        ({"top_ratio": 0.0}, "top_ratio"),
    ],
)
def test_bad_settings_are_rejected_with_a_clear_message(settings, message):
    with pytest.raises(ValueError, match=message):
        BlockSparseAttention(**settings)
