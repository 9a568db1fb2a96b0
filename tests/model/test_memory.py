"""The memory plan: the peak estimate against the H200's measurements, the placement of the taps, and the
host placement giving the same predictions bit for bit."""

from __future__ import annotations

import pytest
import torch

from vggt_sparse_ns.model import VGGTConfig
from vggt_sparse_ns.model.aggregator import TapStore
from vggt_sparse_ns.model.memory import (
    MemoryEstimate,
    estimate_peak_bytes,
    free_device_bytes,
    query_chunks,
    taps_on_host,
)

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


def test_explicit_placements_are_obeyed_whatever_the_memory():
    estimate = MemoryEstimate(taps_on_device=10 * GIB, taps_on_host=5 * GIB)
    assert taps_on_host("host", estimate, free_bytes=100 * GIB)
    assert not taps_on_host("device", estimate, free_bytes=1 * GIB)


def test_auto_moves_the_taps_to_the_host_only_when_the_gpu_would_not_hold_the_run():
    estimate = MemoryEstimate(taps_on_device=20 * GIB, taps_on_host=12 * GIB)
    assert not taps_on_host("auto", estimate, free_bytes=80 * GIB)
    assert taps_on_host("auto", estimate, free_bytes=16 * GIB)
    assert taps_on_host("auto", estimate, free_bytes=21 * GIB)  # fits only without headroom
    assert not taps_on_host("auto", estimate, free_bytes=None)  # not a GPU: host and device are one memory


def test_an_unknown_placement_is_refused():
    with pytest.raises(ValueError, match="auto, device or host"):
        taps_on_host("disk", MemoryEstimate(1, 1), free_bytes=None)


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
def test_on_a_gpu_taps_kept_in_page_locked_host_memory_give_the_same_predictions_bit_for_bit(
    vggt_tiny_dir, vggt_tiny_expected
):
    from vggt_sparse_ns.model import load_pretrained

    model = load_pretrained(vggt_tiny_dir, device="cuda")
    images = torch.from_numpy(vggt_tiny_expected["input_images"]).cuda()
    on_device = model(images, frames_chunk=2)
    on_host = model(images, frames_chunk=2, taps_on_host=True)
    for key in PREDICTION_KEYS:
        torch.testing.assert_close(on_host[key], on_device[key], rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device beside the host")
def test_a_host_tap_store_keeps_page_locked_copies_of_every_chunk():
    store = TapStore(torch.device("cuda"), on_host=True)
    values = torch.arange(24.0, device="cuda").reshape(1, 6, 4)
    for start in range(0, 6, 2):
        store.put("tap", 6, slice(start, start + 2), values[:, start : start + 2] * 1)
    kept = store.finish()["tap"]
    torch.cuda.synchronize()
    assert kept.device.type == "cpu" and kept.is_pinned()
    assert torch.equal(kept, values.cpu())


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


def test_query_chunks_follow_the_choice_or_with_auto_only_where_all_queries_do_not_fit():
    estimate = MemoryEstimate(taps_on_device=20 * GIB, taps_on_host=12 * GIB)
    assert query_chunks("chunks", estimate, free_bytes=100 * GIB, taps_on_host=False)
    assert not query_chunks("all", estimate, free_bytes=1 * GIB, taps_on_host=True)
    assert not query_chunks("auto", estimate, free_bytes=16 * GIB, taps_on_host=True)
    assert query_chunks("auto", estimate, free_bytes=16 * GIB, taps_on_host=False)
    assert query_chunks("auto", estimate, free_bytes=13 * GIB, taps_on_host=True)  # fits only without headroom
    assert not query_chunks("auto", estimate, free_bytes=None, taps_on_host=False)  # not a GPU


def test_a_global_queries_choice_that_is_not_one_is_refused():
    with pytest.raises(ValueError, match="auto, all or chunks"):
        query_chunks("some", MemoryEstimate(1, 1), free_bytes=None, taps_on_host=False)
