"""reconstruct(): image files -> a Reconstruction on the host, with clear failures."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from vggt_sparse_ns.hub import WeightsUnavailableError
from vggt_sparse_ns.images import load_images
from vggt_sparse_ns.model import VGGT, load_pretrained
from vggt_sparse_ns.pipeline import ReconstructionConfig, ReconstructionOutOfMemoryError, reconstruct
from vggt_sparse_ns.pipeline.errors import InputError
from vggt_sparse_ns.timing import StageTimer


@pytest.fixture
def scene(tmp_path: Path, write_image) -> list[Path]:
    return [write_image(tmp_path / f"{index}.png", 96, 24) for index in range(3)]


@pytest.fixture
def tiny_config(vggt_tiny_dir: Path) -> ReconstructionConfig:
    return ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu")


def test_predictions_reach_the_host_unchanged_with_stage_times(scene, vggt_tiny_dir) -> None:
    log = StageTimer()
    result = reconstruct(scene, ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"), log, point_head=True)

    batch = load_images(scene)
    with torch.inference_mode():
        expected = load_pretrained(vggt_tiny_dir)(batch.tensor)
    np.testing.assert_allclose(result.T_camera_world, expected["extrinsic"][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(result.intrinsics, expected["intrinsic"][0].numpy(), atol=1e-4)
    np.testing.assert_allclose(result.depth, expected["depth"][0, ..., 0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.depth_conf, expected["depth_conf"][0].numpy(), rtol=1e-4)
    np.testing.assert_allclose(result.world_points, expected["world_points"][0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(result.colors, batch.pixels)
    assert result.transforms == batch.transforms
    assert result.image_paths == scene
    # No Gluon kernel on CPU, and no query chunks: host and device memory are one.
    assert result.attention == {"strategy": "dense", "implementation": "sdpa", "query_chunks": False}
    assert result.graph_edges is None
    assert list(log.seconds()) == ["load model", "load images", "inference"]
    assert log.peak_memory_bytes is None


def test_covisibility_attention_reports_its_frame_graph_and_skips_the_point_head_by_default(scene, tiny_config) -> None:
    config = ReconstructionConfig(
        checkpoint=tiny_config.checkpoint, device="cpu", attention="covisibility", neighbors=1
    )
    result = reconstruct(scene, config)
    assert result.attention["strategy"] == "covisibility"
    edges = {tuple(edge) for edge in result.graph_edges.tolist()}
    assert {(0, 1), (0, 2)} <= edges, "every frame keeps its path to frame 0, which defines the world"
    assert all(i < j for i, j in edges)
    assert len(edges) == result.attention["graphs"][0]["edges"]
    assert result.world_points is None


def test_a_single_image_is_refused(scene, tiny_config) -> None:
    with pytest.raises(InputError, match="at least 2 images"):
        reconstruct(scene[:1], tiny_config)


def test_out_of_memory_names_the_settings_that_help(scene, tiny_config, monkeypatch) -> None:
    def run_out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(VGGT, "forward", run_out_of_memory)
    with pytest.raises(ReconstructionOutOfMemoryError) as raised:
        reconstruct(scene, tiny_config)
    flags = (
        "--attention covisibility",
        "--neighbors",
        "--preprocess",
        "--num-frames-target",
        "--frames-chunk",
        "--device",
    )
    for flag in flags:
        assert flag in str(raised.value)
    assert "3 frames" in str(raised.value)


def test_the_frames_chunk_flag_reaches_the_model(scene, tiny_config, monkeypatch) -> None:
    seen = {}
    forward = VGGT.forward

    def spy(self, *args, **kwargs):
        seen["frames_chunk"] = kwargs.get("frames_chunk")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(VGGT, "forward", spy)
    reconstruct(scene, dataclasses.replace(tiny_config, frames_chunk=2))
    assert seen == {"frames_chunk": 2}


def test_other_runtime_errors_are_not_mistaken_for_out_of_memory(scene, tiny_config, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(VGGT, "forward", fail)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        reconstruct(scene, tiny_config)


def test_missing_weights_offline_stop_before_any_image_is_decoded(scene, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    decoded = []
    monkeypatch.setattr("vggt_sparse_ns.pipeline.run.load_images", lambda *args, **kwargs: decoded.append(args))
    log = StageTimer()
    with pytest.raises(WeightsUnavailableError, match="facebook/VGGT-1B"):
        reconstruct(scene, ReconstructionConfig(device="cpu"), log)
    assert decoded == [] and "load images" not in log.seconds()


def test_missing_megaloc_weights_stop_before_any_image_is_decoded(scene, tiny_config, tmp_path, monkeypatch) -> None:
    decoded = []
    monkeypatch.setattr("vggt_sparse_ns.pipeline.run.load_images", lambda *args, **kwargs: decoded.append(args))
    config = dataclasses.replace(
        tiny_config, attention="covisibility", descriptors="megaloc", megaloc_checkpoint=str(tmp_path / "nowhere")
    )
    with pytest.raises(WeightsUnavailableError, match="nowhere does not exist"):
        reconstruct(scene, config)
    assert decoded == []


def test_unreadable_weights_stop_the_decoding_instead_of_waiting_for_it(tmp_path, write_image, monkeypatch) -> None:
    import vggt_sparse_ns.images as images

    scene = [write_image(tmp_path / f"{index}.png", 32, 16) for index in range(40)]
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"not a safetensors file")
    decoded = []
    preprocess = images._preprocess

    def slow_preprocess(*args, **kwargs):
        decoded.append(args[0])
        time.sleep(0.2)
        return preprocess(*args, **kwargs)

    monkeypatch.setattr(images, "_preprocess", slow_preprocess)
    with pytest.raises(WeightsUnavailableError, match="Could not read the weights file"):
        reconstruct(scene, ReconstructionConfig(checkpoint=str(checkpoint), device="cpu"))
    assert len(decoded) < len(scene)


def test_images_are_decoded_while_the_weights_load(scene, tiny_config, monkeypatch) -> None:
    import vggt_sparse_ns.pipeline.run as run

    decoding_started = threading.Event()
    loading = run.load_pretrained

    def decode(*args, **kwargs):
        decoding_started.set()
        return load_images(*args, **kwargs)

    def load_once_decoding_has_started(*args, **kwargs):
        assert decoding_started.wait(timeout=30), "the weights were loaded before any image was being decoded"
        return loading(*args, **kwargs)

    monkeypatch.setattr(run, "load_images", decode)
    monkeypatch.setattr(run, "load_pretrained", load_once_decoding_has_started)
    log = StageTimer()
    result = reconstruct(scene, tiny_config, log)
    assert list(log.seconds())[:2] == ["load model", "load images"] and len(result.image_paths) == len(scene)


def test_an_unavailable_device_is_a_clear_input_error(scene, tiny_config) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError, match="--device cuda"):
        reconstruct(scene, ReconstructionConfig(checkpoint=tiny_config.checkpoint, device="cuda"))
