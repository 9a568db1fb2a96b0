"""CovisibilityAttention against explicit boolean masks over all tokens (random q, k, v)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sparse_reference import covisibility_mask, masked_attention

from vggt_sparse_ns.sparse import CovisibilityAttention, FrameGraph, FrameLayout
from vggt_sparse_ns.sparse.covisibility import COVISIBILITY_ATTENTION, gather_chunks
from vggt_sparse_ns.sparse.graph_build import FrameGraphSettings

FRAMES, TOKENS, SPECIAL, HEADS, HEAD_DIM = 7, 23, 5, 2, 16
PARTIAL_LISTS = [[], [2], [], [4, 5], [], [1], [3]]
TOLERANCE = 1e-5


@pytest.fixture(params=["gather", "triton"])
def implementation(request) -> str:
    """The gather implementation and the Triton kernel's; triton runs in Triton's interpreter where there is no
    GPU (where dispatch would not choose it, so ``run`` calls it by name)."""
    if request.param == "triton":
        request.getfixturevalue("triton_interpreter")
    return request.param


def random_heads(batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, HEADS, FRAMES * TOKENS, HEAD_DIM)
    return tuple(torch.randn(shape, generator=generator) for _ in range(3))


def patch_tokens(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, FRAMES, TOKENS - SPECIAL, 4, generator=torch.Generator().manual_seed(1))


def run(strategy: CovisibilityAttention, batch: int = 1, seed: int = 0):
    """The strategy's plan on random q, k, v: its implementation run by name (auto: as the plan chooses)."""
    q, k, v = random_heads(batch, seed)
    plan = strategy.prepare(FrameLayout(batch, FRAMES, TOKENS, SPECIAL), patch_tokens(batch))
    if strategy.implementation == "auto":
        return plan(q, k, v, layer=0), (q, k, v), plan
    return COVISIBILITY_ATTENTION.named(strategy.implementation).run(plan, q, k, v), (q, k, v), plan


def test_partial_graph_equals_the_explicit_mask_reference(implementation):
    graph = FrameGraph.from_neighbor_lists(PARTIAL_LISTS, FRAMES)
    out, (q, k, v), _ = run(CovisibilityAttention(graph=graph, implementation=implementation))
    expected = masked_attention(q, k, v, covisibility_mask(PARTIAL_LISTS, TOKENS, SPECIAL))
    torch.testing.assert_close(out, expected, rtol=0, atol=TOLERANCE)


def test_directed_graph_attends_only_to_the_chosen_frames(implementation):
    graph = FrameGraph.from_neighbor_lists(PARTIAL_LISTS, FRAMES, symmetric=False)
    out, (q, k, v), _ = run(CovisibilityAttention(graph=graph, implementation=implementation))
    expected = masked_attention(q, k, v, covisibility_mask(PARTIAL_LISTS, TOKENS, SPECIAL, symmetric=False))
    torch.testing.assert_close(out, expected, rtol=0, atol=TOLERANCE)
    symmetric = masked_attention(q, k, v, covisibility_mask(PARTIAL_LISTS, TOKENS, SPECIAL))
    assert (out - symmetric).abs().max() > 1e-2


def test_with_all_special_tokens_a_frame_also_sees_every_frames_special_tokens(implementation):
    graph = FrameGraph.from_neighbor_lists(PARTIAL_LISTS, FRAMES)
    out, (q, k, v), _ = run(CovisibilityAttention(graph=graph, implementation=implementation, all_special_tokens=True))
    mask = covisibility_mask(PARTIAL_LISTS, TOKENS, SPECIAL, all_special_tokens=True)
    torch.testing.assert_close(out, masked_attention(q, k, v, mask), rtol=0, atol=TOLERANCE)
    attended_only = masked_attention(q, k, v, covisibility_mask(PARTIAL_LISTS, TOKENS, SPECIAL))
    assert (out - attended_only).abs().max() > 1e-2


def test_the_mask_really_acts():
    graph = FrameGraph.from_neighbor_lists(PARTIAL_LISTS, FRAMES)
    out, (q, k, v), _ = run(CovisibilityAttention(graph=graph))
    assert (out - F.scaled_dot_product_attention(q, k, v)).abs().max() > 1e-2


def test_complete_graph_equals_dense_attention(implementation):
    out, (q, k, v), _ = run(CovisibilityAttention(graph=FrameGraph.complete(FRAMES), implementation=implementation))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=0, atol=TOLERANCE)


def test_a_single_frame_attends_to_itself_as_dense_attention_does():
    q, k, v = (
        torch.randn(1, HEADS, TOKENS, HEAD_DIM, generator=torch.Generator().manual_seed(seed)) for seed in range(3)
    )
    plan = CovisibilityAttention().prepare(FrameLayout(1, 1, TOKENS, SPECIAL), torch.randn(1, 1, TOKENS - SPECIAL, 4))
    torch.testing.assert_close(plan(q, k, v, layer=0), F.scaled_dot_product_attention(q, k, v), rtol=0, atol=TOLERANCE)


def test_chunk_size_does_not_change_the_result():
    graph = FrameGraph.from_neighbor_lists(PARTIAL_LISTS, FRAMES)
    one_frame_chunks, _, _ = run(CovisibilityAttention(graph=graph, max_gathered_frames=1))
    whole, _, _ = run(CovisibilityAttention(graph=graph, max_gathered_frames=10_000))
    torch.testing.assert_close(one_frame_chunks, whole, rtol=0, atol=TOLERANCE)


def test_each_scene_of_a_batch_uses_its_own_graph(implementation):
    descriptors = torch.randn(2, FRAMES, 6, generator=torch.Generator().manual_seed(2))
    strategy = CovisibilityAttention(neighbors=1, descriptors=descriptors, implementation=implementation)
    out, (q, k, v), plan = run(strategy, batch=2)
    for scene in range(2):
        lists = FrameGraphSettings(neighbors=1).build(descriptors[scene]).neighbor_lists()
        mask = covisibility_mask(lists, TOKENS, SPECIAL, symmetric=False)
        expected = masked_attention(q[scene : scene + 1], k[scene : scene + 1], v[scene : scene + 1], mask)
        torch.testing.assert_close(out[scene : scene + 1], expected, rtol=0, atol=TOLERANCE)
    assert len(plan.summary()["graphs"]) == 2


def test_gathered_key_frames_hold_no_duplicates_and_include_self_and_frame_zero():
    graph = FrameGraph.from_neighbor_lists(PARTIAL_LISTS, FRAMES, connect_reference=False)
    chunks = gather_chunks(graph, FrameLayout(1, FRAMES, TOKENS, SPECIAL), max_gathered_frames=3)
    seen = []
    for chunk in chunks:
        for query, keys in zip(chunk.query_frames.tolist(), chunk.key_frames.tolist(), strict=True):
            assert len(set(keys)) == len(keys)
            assert keys[0] == query and 0 in keys
            seen.append(query)
    assert sorted(seen) == list(range(FRAMES))


def test_without_a_graph_it_is_built_from_pooled_patch_tokens():
    _, _, plan = run(CovisibilityAttention(neighbors=2))
    summary = plan.summary()
    assert summary["strategy"] == "covisibility"
    assert summary["graph_source"] == "patch tokens (GeM)"
    assert summary["neighbors"] == 2
    assert summary["graphs"][0]["frames"] == FRAMES
    assert summary["graphs"][0]["degree_min"] >= 2


def test_a_graph_for_another_frame_count_is_rejected():
    with pytest.raises(ValueError, match="frame graph has 3 frames but the scene has 7"):
        run(CovisibilityAttention(graph=FrameGraph.complete(3)))


def test_descriptors_of_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match="descriptors must be"):
        run(CovisibilityAttention(descriptors=torch.ones(FRAMES + 1, 4)))
