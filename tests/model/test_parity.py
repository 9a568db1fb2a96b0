"""Our VGGT computes the same function as the original implementation (fixture outputs, fp32 CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggt_sparse_ns.layers.attention import QK_NORM_ROPE
from vggt_sparse_ns.layers.block import PRE_NORM
from vggt_sparse_ns.layers.implementations import Operation
from vggt_sparse_ns.model.aggregator import Tap
from vggt_sparse_ns.sparse import DenseAttention

RELATIVE_TOLERANCE = 1e-4
"""Max abs error allowed, as a fraction of each expected array's largest magnitude."""

PREDICTION_KEYS = ("pose_enc", "extrinsic", "intrinsic", "depth", "depth_conf", "world_points", "world_points_conf")


def assert_matches(actual: torch.Tensor, expected: np.ndarray, name: str) -> None:
    actual = actual.detach().cpu().numpy()
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    scale = float(np.abs(expected).max())
    error = float(np.abs(actual - expected).max())
    assert error <= RELATIVE_TOLERANCE * scale, f"{name}: max error {error:.3g} > {RELATIVE_TOLERANCE} x {scale:.3g}"


@pytest.fixture(scope="module")
def predictions(vggt_tiny, vggt_tiny_expected):
    with torch.inference_mode():
        return vggt_tiny(torch.from_numpy(vggt_tiny_expected["input_images"]))


def test_patch_embed_tokens_match_original(vggt_tiny, vggt_tiny_expected):
    images = torch.from_numpy(vggt_tiny_expected["input_images"])
    with torch.inference_mode():
        tokens = vggt_tiny.aggregator.embed_patches(images)
    assert_matches(tokens, vggt_tiny_expected["dino_patch_tokens"], "dino_patch_tokens")


def test_last_aggregator_round_matches_original(vggt_tiny, vggt_tiny_expected, vggt_tiny_config):
    images = torch.from_numpy(vggt_tiny_expected["input_images"])[None]
    last = vggt_tiny_config["depth"] - 1
    taps = {"last": Tap(last, lambda tokens: tokens)}
    output = vggt_tiny.aggregator(images, DenseAttention(), taps, frames_chunk=3)
    assert_matches(output.kept["last"], vggt_tiny_expected["aggregator_last_layer"], "aggregator_last_layer")


@pytest.mark.parametrize("key", PREDICTION_KEYS)
def test_prediction_matches_original(predictions, vggt_tiny_expected, key):
    assert_matches(predictions[key], vggt_tiny_expected[key], key)


def test_unbatched_and_batched_inputs_give_the_same_predictions(vggt_tiny, vggt_tiny_expected):
    images = torch.from_numpy(vggt_tiny_expected["input_images"][:2])
    with torch.inference_mode():
        unbatched = vggt_tiny(images)
        batched = vggt_tiny(images[None])
    for key in PREDICTION_KEYS:
        torch.testing.assert_close(unbatched[key], batched[key], rtol=0, atol=0)


def test_scenes_in_one_batch_give_each_scene_its_own_predictions(vggt_tiny, vggt_tiny_expected):
    frames = torch.from_numpy(vggt_tiny_expected["input_images"][:3])
    scenes = torch.stack((frames, frames.flip(0)))
    with torch.inference_mode():
        together = vggt_tiny(scenes, frames_chunk=2)  # the taps read each chunk of frames of both scenes at once
        alone = [vggt_tiny(scene, frames_chunk=2) for scene in scenes]
    for key in PREDICTION_KEYS:
        for index, scene in enumerate(alone):
            torch.testing.assert_close(together[key][index], scene[key][0], rtol=1e-5, atol=1e-5)


def test_frame_chunking_does_not_change_results(vggt_tiny, vggt_tiny_expected):
    images = torch.from_numpy(vggt_tiny_expected["input_images"][:3])
    one_chunk = vggt_tiny(images, frames_chunk=8)
    per_frame = vggt_tiny(images, frames_chunk=1)
    for key in PREDICTION_KEYS:
        torch.testing.assert_close(one_chunk[key], per_frame[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_implementation", ["auto", "torch"])
def test_the_norm_implementation_reaches_every_norm_of_the_aggregator(
    vggt_tiny, vggt_tiny_expected, monkeypatch, norm_implementation
):
    asked = []
    choose = Operation.choose

    def spy(operation: Operation, choice: str, inputs):
        asked.append((operation.name, choice))
        return choose(operation, choice, inputs)

    monkeypatch.setattr(Operation, "choose", spy)
    images = torch.from_numpy(vggt_tiny_expected["input_images"][:2])
    vggt_tiny(images, outputs=["depth"], norm_implementation=norm_implementation)  # no camera trunk: all aggregator
    norms = [choice for name, choice in asked if name in (PRE_NORM.name, QK_NORM_ROPE.name)]
    assert {name for name, _ in asked} >= {PRE_NORM.name, QK_NORM_ROPE.name}
    assert set(norms) == {norm_implementation}


def test_the_fused_norms_asked_for_where_they_cannot_run_are_refused_with_the_reason(vggt_tiny, vggt_tiny_expected):
    images = torch.from_numpy(vggt_tiny_expected["input_images"][:2])
    with pytest.raises(
        ValueError, match="cannot run these inputs with triton: triton: .*it runs on CUDA devices, not cpu"
    ):
        vggt_tiny(images, norm_implementation="triton")


@pytest.mark.parametrize(("argument", "value"), [("norm_implementation", "fused"), ("sdpa_backend", "cuda")])
def test_an_unknown_norm_implementation_or_sdpa_backend_is_refused_before_any_work(
    vggt_tiny, vggt_tiny_expected, argument, value
):
    images = torch.from_numpy(vggt_tiny_expected["input_images"][:2])
    with pytest.raises(ValueError, match=f"'{value}'"):
        vggt_tiny(images, **{argument: value})


def test_only_the_requested_heads_run(vggt_tiny, vggt_tiny_expected):
    images = torch.from_numpy(vggt_tiny_expected["input_images"][:2])
    everything = vggt_tiny(images)
    predictions = vggt_tiny(images, outputs=["cameras", "depth"])
    assert "world_points" not in predictions and "depth" in predictions and "extrinsic" in predictions
    torch.testing.assert_close(predictions["depth"], everything["depth"], rtol=0, atol=0)
    with pytest.raises(ValueError, match="cannot output"):
        vggt_tiny(images, outputs=["normals"])


def test_model_rejects_sizes_that_are_not_patch_multiples(vggt_tiny):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        vggt_tiny(torch.rand(2, 3, 100, 140))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device beside the host")
def test_images_on_the_host_do_not_change_results(vggt_tiny_dir, vggt_tiny_expected):
    from vggt_sparse_ns.model import load_pretrained

    model = load_pretrained(vggt_tiny_dir, device="cuda")
    images = torch.from_numpy(vggt_tiny_expected["input_images"])
    on_device = model(images.cuda(), frames_chunk=2)
    from_host = model(images.pin_memory(), frames_chunk=2)
    for key in PREDICTION_KEYS:
        torch.testing.assert_close(from_host[key], on_device[key], rtol=0, atol=0)


def test_8_bit_images_in_channels_last_views_give_the_predictions_of_their_float_values(vggt_tiny, vggt_tiny_expected):
    floats = torch.from_numpy(vggt_tiny_expected["input_images"][:2])
    eight_bit = torch.round(floats * 255).to(torch.uint8)
    assert torch.equal(eight_bit.float() / 255, floats), "the fixture images are 8-bit values"
    channels_last_view = eight_bit.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # as ImageBatch.tensor
    with torch.inference_mode():
        from_floats, from_bytes = vggt_tiny(floats), vggt_tiny(channels_last_view)
    for key in PREDICTION_KEYS:
        torch.testing.assert_close(from_bytes[key], from_floats[key], rtol=1e-5, atol=1e-6)


def test_integer_images_other_than_8_bit_are_refused(vggt_tiny, vggt_tiny_expected):
    images = torch.zeros(vggt_tiny_expected["input_images"][:2].shape, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        vggt_tiny(images)
