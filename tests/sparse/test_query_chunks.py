"""Every strategy's plan attends a range of query frames as the whole-sequence call does, and the tiny VGGT
run by chunks of query frames predicts what the whole-sequence run predicts (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch

from vggt_sparse_ns.sparse import (
    BlockSparseAttention,
    CovisibilityAttention,
    DenseAttention,
    FrameGraph,
    FrameLayout,
    GlobalAttention,
    LayerSelection,
)
from vggt_sparse_ns.sparse.covisibility import COVISIBILITY_ATTENTION

FRAMES, TOKENS, SPECIAL, HEADS, HEAD_DIM = 7, 23, 5, 2, 16
LISTS = [[], [2], [], [4, 5], [], [1], [3]]
RANGES = [slice(0, 3), slice(3, 6), slice(6, 7), slice(2, 5)]
"""Ranges that split the degree-grouped gather chunks and the frames listed for other frames."""
PREDICTION_KEYS = ("pose_enc", "extrinsic", "intrinsic", "depth", "depth_conf", "world_points", "world_points_conf")


def heads(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.randn(batch, HEADS, FRAMES * TOKENS, HEAD_DIM, generator=generator) for _ in range(3))


def prepared(strategy: GlobalAttention, batch: int = 2):
    patch_tokens = torch.randn(batch, FRAMES, TOKENS - SPECIAL, 4, generator=torch.Generator().manual_seed(1))
    return strategy.prepare(FrameLayout(batch, FRAMES, TOKENS, SPECIAL), patch_tokens)


def rows(frames: slice) -> slice:
    return slice(frames.start * TOKENS, frames.stop * TOKENS)


def covisibility(implementation: str, all_special_tokens: bool = False) -> CovisibilityAttention:
    graph = FrameGraph.from_neighbor_lists(LISTS, FRAMES)
    return CovisibilityAttention(
        graph=graph, all_special_tokens=all_special_tokens, implementation=implementation, max_gathered_frames=3
    )


SDPA_ROUNDING = 1e-6
"""PyTorch's CPU SDPA tiles the queries by their count, so a chunk's rows may differ from the whole call's in the
last bits (seen: 1.5e-7 on outputs of magnitude ~1); the gather path and frame attention are exact."""
TOLERANCE = {
    "dense": SDPA_ROUNDING,
    "covisibility gather": 0.0,
    "covisibility gather, all special tokens": 0.0,
    "layer selection": SDPA_ROUNDING,
}
PLAN_STRATEGIES = {
    "dense": DenseAttention(),
    "covisibility gather": covisibility("gather"),
    "covisibility gather, all special tokens": covisibility("gather", all_special_tokens=True),
    "layer selection": LayerSelection(covisibility("gather"), frame_layers=(0,), dense_layers=(1,)),
}


@pytest.mark.parametrize("layer", [0, 1, 2])
@pytest.mark.parametrize("name", PLAN_STRATEGIES)
def test_a_range_of_query_frames_gets_exactly_those_rows_of_the_whole_call(name, layer):
    plan = prepared(PLAN_STRATEGIES[name])
    q, k, v = heads()
    whole = plan(q, k, v, layer)
    assert plan.attends_query_chunks
    for frames in RANGES:
        chunk = plan(q[:, :, rows(frames)].contiguous(), k, v, layer, query_frames=frames)
        expected = whole[:, :, rows(frames)]
        torch.testing.assert_close(chunk, expected, rtol=0, atol=TOLERANCE[name], msg=f"{name}, frames {frames}")


@pytest.mark.parametrize("all_special_tokens", [False, True])
def test_the_triton_kernel_attends_a_range_of_query_frames_as_the_whole_call(triton_interpreter, all_special_tokens):
    plan = prepared(covisibility("triton", all_special_tokens))
    triton = COVISIBILITY_ATTENTION.named("triton")
    q, k, v = heads()
    whole = triton.run(plan, q, k, v)
    for frames in RANGES:
        chunk = triton.run(plan, q[:, :, rows(frames)].contiguous(), k, v, frames=frames)
        torch.testing.assert_close(chunk, whole[:, :, rows(frames)], rtol=0, atol=0, msg=f"frames {frames}")


def test_block_sparse_attention_says_it_attends_all_queries_at_once_and_refuses_a_range():
    plan = prepared(BlockSparseAttention(query_block=16, key_block=16, implementation="mask"))
    q, k, v = heads()
    assert not plan.attends_query_chunks
    with pytest.raises(ValueError, match="all queries"):
        plan(q[:, :, :TOKENS], k, v, 0, query_frames=slice(0, 1))


MODEL_STRATEGIES = {
    "dense": DenseAttention(),
    "covisibility": CovisibilityAttention(graph=FrameGraph.from_neighbor_lists([[], [4], [3], [], [1], [2]], 6)),
    "layer selection": LayerSelection(CovisibilityAttention(neighbors=2), frame_layers=(0,), dense_layers=(1,)),
    "block-sparse (all queries at once)": BlockSparseAttention(cdf_threshold=0.6, implementation="mask"),
}


CHUNKED = ("dense", "covisibility", "layer selection")
"""The strategies that attend by query chunks when asked (block-sparse attends all queries at once)."""
MODEL_TOLERANCE = {
    "dense": 1e-5,
    "covisibility": 0.0,
    "layer selection": 1e-5,
    "block-sparse (all queries at once)": 0.0,
}
"""Relative, for the strategies whose chunks run by SDPA over all keys (``SDPA_ROUNDING``); exact for the others."""


@pytest.mark.parametrize("name", MODEL_STRATEGIES)
def test_the_model_run_by_query_chunks_predicts_what_the_whole_sequence_run_predicts(vggt_tiny, six_frame_scene, name):
    strategy = MODEL_STRATEGIES[name]
    whole = vggt_tiny(six_frame_scene, strategy, frames_chunk=2)
    chunked = vggt_tiny(six_frame_scene, strategy, frames_chunk=2, query_chunks=True)
    tolerance = MODEL_TOLERANCE[name]
    assert (whole["attention"]["query_chunks"], chunked["attention"]["query_chunks"]) == (False, name in CHUNKED)
    for key in PREDICTION_KEYS:
        torch.testing.assert_close(chunked[key], whole[key], rtol=tolerance, atol=tolerance, msg=f"{name}: {key}")


class QueryRangeRecorder:
    """Runs dense attention and records the query frames of every call, by layer."""

    def __init__(self) -> None:
        self.ranges: dict[int, list[slice | None]] = {}

    def prepare(self, layout: FrameLayout, patch_tokens: torch.Tensor) -> QueryRangeRecorder:
        self.plan = DenseAttention().prepare(layout, patch_tokens)
        self.attends_query_chunks = True
        return self

    def __call__(self, q, k, v, layer: int, query_frames: slice | None = None) -> torch.Tensor:
        self.ranges.setdefault(layer, []).append(query_frames)
        return self.plan(q, k, v, layer, query_frames)

    def summary(self) -> dict:
        return self.plan.summary()


def test_by_query_chunks_each_global_layer_attends_frames_chunk_query_frames_at_a_time(vggt_tiny, six_frame_scene):
    recorder = QueryRangeRecorder()
    vggt_tiny(six_frame_scene, recorder, outputs=("cameras",), frames_chunk=4, query_chunks=True)
    assert recorder.ranges == {layer: [slice(0, 4), slice(4, 6)] for layer in range(vggt_tiny.config.depth)}
    vggt_tiny(six_frame_scene, recorder := QueryRangeRecorder(), outputs=("cameras",), frames_chunk=4)
    assert recorder.ranges == {layer: [None] for layer in range(vggt_tiny.config.depth)}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the kernels in bf16)")
def test_on_the_gpu_covisibility_by_query_chunks_predicts_what_the_whole_sequence_run_predicts(
    vggt_tiny, six_frame_scene
):
    """The frame-list kernels process each query frame on its own, so the chunks' rows are the same bits."""
    model, images = vggt_tiny.to("cuda"), six_frame_scene.to("cuda")
    try:
        strategy = MODEL_STRATEGIES["covisibility"]
        whole = model(images, strategy, frames_chunk=2, compute_dtype=torch.bfloat16)
        chunked = model(images, strategy, frames_chunk=2, compute_dtype=torch.bfloat16, query_chunks=True)
        assert chunked["attention"]["implementation"] in ("gluon", "triton")
        for key in PREDICTION_KEYS:
            torch.testing.assert_close(chunked[key], whole[key], rtol=0, atol=0, msg=key)
    finally:
        vggt_tiny.to("cpu")
