"""The memory plan: the peak estimate against the H200's measurements, the placement of the taps, and the
host placement giving the same predictions bit for bit."""

from __future__ import annotations

import pytest
import torch

from vggt_sparse_ns.model import VGGTConfig
from vggt_sparse_ns.model.aggregator import TapStore
from vggt_sparse_ns.model.memory import MemoryEstimate, MemoryPlan, estimate_peak_bytes, free_device_bytes, plan_memory

GIB = 2**30
PREDICTION_KEYS = ("pose_enc", "extrinsic", "intrinsic", "depth", "depth_conf", "world_points", "world_points_conf")


@pytest.mark.parametrize(
    ("frames", "measured_peak_gib"),
    [(1000, 25.57), (4096, 90.89)],  # docs/benchmarks/memory.json: 518x392, k=16, fp32 images on the GPU
)
def test_the_estimate_is_within_3_percent_of_the_peaks_measured_on_the_h200(frames, measured_peak_gib):
    weights = 4.44 * GIB  # VGGT-1B's fp32 parameters, as measured beside the peaks
    estimate = estimate_peak_bytes(VGGTConfig(), frames, 392, 518, weights_bytes=int(weights), images_on_device=True)
    assert estimate.taps_on_device / GIB == pytest.approx(measured_peak_gib, rel=0.03)


def test_taps_on_the_host_leave_the_gpu_the_taps_share_of_the_peak():
    estimate = estimate_peak_bytes(VGGTConfig(), 1000, 392, 518, weights_bytes=0)
    # What the taps keep: 2,816 fp32 channels per patch token (37 x 28 patches) and a 2,048-wide camera token.
    all_taps = 1000 * (37 * 28 * 2816 + 2048) * 4
    assert estimate.taps_on_host < estimate.taps_on_device < estimate.taps_on_host + all_taps


def small_forward(query_chunks: bool) -> MemoryEstimate:
    """10 GiB of attention (4 GiB by query chunks) and 2 GiB of heads above nothing held, with three taps of 1, 2
    and 4 GiB all read before the attention's peak."""
    taps = {"a": 1 * GIB, "b": 2 * GIB, "c": 4 * GIB}
    return MemoryEstimate(0, (4 if query_chunks else 10) * GIB, 2 * GIB, taps, frozenset(taps))


def free_for(peak_gib: float) -> int:
    """Free bytes whose planned share (HEADROOM) is exactly ``peak_gib``."""
    from vggt_sparse_ns.model.memory import HEADROOM

    return int(peak_gib * GIB / HEADROOM) + 1


def test_explicit_choices_are_obeyed_whatever_the_memory():
    assert plan_memory("host", "all", small_forward, free_for(100)) == MemoryPlan(frozenset("abc"), False)
    assert plan_memory("device", "chunks", small_forward, free_for(1)) == MemoryPlan(frozenset(), True)


def test_auto_keeps_every_tap_on_the_device_and_all_queries_where_the_run_fits():
    assert plan_memory("auto", "auto", small_forward, free_for(17)) == MemoryPlan(frozenset(), False)


def test_auto_moves_the_fewest_tap_bytes_that_let_the_run_fit():
    assert plan_memory("auto", "auto", small_forward, free_for(16)).taps_on_host == {"a"}
    assert plan_memory("auto", "auto", small_forward, free_for(13.5)).taps_on_host == {"c"}  # a + b is 1 GiB short
    assert plan_memory("auto", "auto", small_forward, free_for(12)).taps_on_host == {"a", "c"}  # 5 GiB, b + c 6


def test_auto_attends_by_query_chunks_only_where_no_placement_of_the_taps_fits():
    assert plan_memory("auto", "auto", small_forward, free_for(10)) == MemoryPlan(frozenset("abc"), False)
    plan = plan_memory("auto", "auto", small_forward, free_for(9))
    assert plan.query_chunks and plan.taps_on_host == {"b"}  # by chunks, a and c fit on the device again
    assert plan_memory("auto", "all", small_forward, free_for(9)) == MemoryPlan(frozenset("abc"), False)


def test_where_nothing_fits_every_tap_goes_to_the_host_and_queries_by_chunks():
    assert plan_memory("auto", "auto", small_forward, free_for(1)) == MemoryPlan(frozenset("abc"), True)


def test_on_a_cpu_nothing_moves():
    assert plan_memory("auto", "auto", small_forward, None) == MemoryPlan(frozenset(), False)


@pytest.mark.parametrize(("taps", "queries"), [("disk", "auto"), ("auto", "some")])
def test_a_choice_that_is_not_one_is_refused(taps, queries):
    with pytest.raises(ValueError, match="auto, device or host|auto, all or chunks"):
        plan_memory(taps, queries, small_forward, None)


def test_the_estimate_names_the_models_taps_and_their_sizes():
    config = VGGTConfig()
    estimate = estimate_peak_bytes(config, 1000, 392, 518, weights_bytes=0, points=True)
    patches = 37 * 28
    expected = {"cameras": 1000 * 2 * config.embed_dim * 4}
    for head in ("depth", "points"):
        expected.update({f"{head}.{i}": 1000 * patches * c * 4 for i, c in enumerate(config.dpt_out_channels)})
    assert dict(estimate.taps) == expected
    # Only the last round's taps are read after its attention (all queries at once).
    assert estimate.taps_in_attention == set(expected) - {"cameras", "depth.3", "points.3"}


def test_a_cpu_has_no_device_memory_to_plan():
    assert free_device_bytes(torch.device("cpu")) is None


def test_on_a_cpu_the_host_placement_gives_the_same_predictions(vggt_tiny, vggt_tiny_expected):
    images = torch.from_numpy(vggt_tiny_expected["input_images"])
    with torch.inference_mode():
        on_device = vggt_tiny(images, frames_chunk=2)
        on_host = vggt_tiny(images, frames_chunk=2, taps_on_host=True)
    for key in PREDICTION_KEYS:
        torch.testing.assert_close(on_host[key], on_device[key], rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device beside the host")
@pytest.mark.parametrize("on_host", [True, {"cameras", "depth.1", "points.3"}], ids=["all", "some"])
def test_on_a_gpu_taps_kept_in_page_locked_host_memory_give_the_same_predictions_bit_for_bit(
    vggt_tiny_dir, vggt_tiny_expected, on_host
):
    from vggt_sparse_ns.model import load_pretrained

    model = load_pretrained(vggt_tiny_dir, device="cuda")
    images = torch.from_numpy(vggt_tiny_expected["input_images"]).cuda()
    on_device = model(images, frames_chunk=2)
    on_host = model(images, frames_chunk=2, taps_on_host=on_host)
    for key in PREDICTION_KEYS:
        torch.testing.assert_close(on_host[key], on_device[key], rtol=0, atol=0)


def stored_by_chunks(store: TapStore) -> tuple[torch.Tensor, torch.Tensor]:
    """(what ``store`` keeps of one tap of 6 frames put 2 frames at a time, the values put)."""
    values = torch.arange(24.0, device="cuda").reshape(1, 6, 4)
    for start in range(0, 6, 2):
        store.put("tap", 6, slice(start, start + 2), values[:, start : start + 2] * 1)
    kept = store.finish()["tap"]
    torch.cuda.synchronize()
    return kept, values


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device beside the host")
def test_a_host_tap_store_keeps_page_locked_copies_of_every_chunk():
    kept, values = stored_by_chunks(TapStore(torch.device("cuda"), on_host=True))
    assert kept.device.type == "cpu" and kept.is_pinned()
    assert torch.equal(kept, values.cpu())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device beside the host")
def test_a_tap_store_keeps_only_the_named_taps_on_the_host():
    store = TapStore(torch.device("cuda"), on_host={"far"})
    values = torch.arange(24.0, device="cuda").reshape(1, 6, 4)
    for name in ("far", "near"):
        store.put(name, 6, slice(0, 6), values * 1)
    kept = store.finish()
    assert kept["far"].device.type == "cpu" and kept["near"].device.type == "cuda"
    assert torch.equal(kept["far"], values.cpu()) and torch.equal(kept["near"], values)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device beside the host")
def test_a_tap_the_host_cannot_page_lock_waits_in_pageable_memory_with_one_warning(monkeypatch, caplog):
    empty = torch.empty

    def no_page_locked_memory(*shape, pin_memory=False, **kwargs):
        if pin_memory:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 96.00 GiB")
        return empty(*shape, **kwargs)

    monkeypatch.setattr(torch, "empty", no_page_locked_memory)
    kept, values = stored_by_chunks(TapStore(torch.device("cuda"), on_host=True))
    assert kept.device.type == "cpu" and not kept.is_pinned()
    assert torch.equal(kept, values.cpu())
    assert [r.getMessage() for r in caplog.records if "pageable" in r.getMessage()] != []


def test_query_chunks_take_all_queries_and_outputs_out_of_the_attention_peak_and_add_one_chunks_mlp():
    config = VGGTConfig()
    whole = estimate_peak_bytes(config, 1000, 392, 518, weights_bytes=0)
    chunked = estimate_peak_bytes(config, 1000, 392, 518, weights_bytes=0, query_chunks=True)
    tokens = 1000 * (28 * 37 + 5)
    chunk_tokens = 16 * (28 * 37 + 5)
    # q and the output of all tokens in bf16, less one chunk's MLP: its input and norm in fp32, the hidden
    # layer's output and its GELU in bf16 (4,096 channels each)
    saved = 2 * tokens * config.embed_dim * 2 - chunk_tokens * (2 * config.embed_dim * 4 + 2 * 4096 * 2)
    assert whole.taps_on_host - chunked.taps_on_host == saved  # the attention peak is the larger one here
    # By query chunks, k and v still exist while the last round's taps are read: on the device, every tap counts.
    all_taps = 1000 * (28 * 37) * sum(config.dpt_out_channels) * 4 + 1000 * 2 * config.embed_dim * 4
    assert chunked.taps_on_device - chunked.taps_on_host == all_taps
