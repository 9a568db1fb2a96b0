"""MegaLoc: the same function and parameter layout as the original, loading, and batched descriptors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vggt_sparse_ns.hub import CheckpointMismatchError, WeightsUnavailableError
from vggt_sparse_ns.layers.precision import IMAGENET_MEAN, IMAGENET_STD
from vggt_sparse_ns.sparse import build_megaloc, load_megaloc
from vggt_sparse_ns.sparse.megaloc import MegaLocConfig, megaloc_descriptors
from vggt_sparse_ns.sparse.megaloc.aggregator import optimal_transport_assignment
from vggt_sparse_ns.sparse.megaloc.descriptors import descriptor_size
from vggt_sparse_ns.sparse.megaloc.model import patch_multiple_size, resize_images

PARITY_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def expected(megaloc_tiny_dir: Path) -> dict[str, np.ndarray]:
    with np.load(megaloc_tiny_dir / "expected.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def megaloc_tiny(megaloc_tiny_dir: Path):
    return load_megaloc(megaloc_tiny_dir, device="cpu")


def _max_error(actual: torch.Tensor, reference: np.ndarray) -> float:
    return (actual - torch.from_numpy(reference)).abs().max().item()


def test_tiny_fixture_loads_strictly_with_its_config_and_ignores_seed_and_note(megaloc_tiny_dir: Path):
    config = json.loads((megaloc_tiny_dir / "config.json").read_text())
    model = build_megaloc(config)
    result = model.load_state_dict(load_file(str(megaloc_tiny_dir / "model.safetensors")), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert model.config.embed_dim == config["embed_dim"] and model.config.feat_dim == config["feat_dim"]


@torch.no_grad()
def test_descriptors_of_patch_multiple_inputs_match_the_original(megaloc_tiny, expected):
    descriptors = megaloc_tiny(torch.from_numpy(expected["input_a"]))
    assert descriptors.shape == expected["descriptor_a"].shape
    assert _max_error(descriptors, expected["descriptor_a"]) <= PARITY_TOLERANCE


@torch.no_grad()
def test_inputs_off_the_patch_grid_are_resized_like_the_original(megaloc_tiny, expected):
    descriptors = megaloc_tiny(torch.from_numpy(expected["input_b"]))  # 300x400 -> 294x406 inside
    assert _max_error(descriptors, expected["descriptor_b"]) <= PARITY_TOLERANCE


def test_sides_round_to_the_nearest_patch_multiple_with_halves_to_even():
    assert patch_multiple_size(300, 400) == (294, 406)
    assert patch_multiple_size(21, 35) == (28, 28)  # 1.5 -> 2 patches, 2.5 -> 2 patches (Python's round)
    with pytest.raises(ValueError, match="too small"):
        patch_multiple_size(6, 100)


def test_resizing_is_torchvisions_antialiased_bilinear_resize():
    from torchvision.transforms.functional import resize

    images = torch.rand(2, 3, 300, 400, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(resize_images(images, (140, 182)), resize(images, [140, 182], antialias=True))


def _sinkhorn_reference(scores: torch.Tensor, dust_bin: float, iterations: int) -> torch.Tensor:
    """Textbook (exp-domain) Sinkhorn scaling for the dust-bin transport problem, float64."""
    batch, clusters, tokens = scores.shape
    kernel = torch.cat((scores, torch.full((batch, 1, tokens), dust_bin)), dim=1).double().exp()
    row_mass = torch.full((clusters + 1,), 1.0 / (tokens + clusters), dtype=torch.float64)
    row_mass[-1] = (tokens - clusters) / (tokens + clusters)
    column_mass = torch.full((tokens,), 1.0 / (tokens + clusters), dtype=torch.float64)
    column_scale = torch.ones(batch, tokens, dtype=torch.float64)
    for _ in range(iterations):
        row_scale = row_mass / torch.einsum("bmn,bn->bm", kernel, column_scale)
        column_scale = column_mass / torch.einsum("bmn,bm->bn", kernel, row_scale)
    plan = row_scale[:, :, None] * kernel * column_scale[:, None, :] * (tokens + clusters)
    return plan[:, :clusters].float()


def test_assignment_is_three_sinkhorn_iterations_of_the_dust_bin_transport_problem():
    scores = 3 * torch.randn(2, 5, 12, generator=torch.Generator().manual_seed(3))
    assignment = optimal_transport_assignment(scores, torch.tensor(0.7))
    torch.testing.assert_close(assignment, _sinkhorn_reference(scores, 0.7, 3), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(assignment, _sinkhorn_reference(scores, 0.7, 4), atol=1e-4)


def test_default_config_has_exactly_the_published_checkpoint_keys_and_shapes(fixtures_dir: Path):
    published = json.loads((fixtures_dir / "megaloc_state_dict_shapes.json").read_text())
    with torch.device("meta"):
        model = build_megaloc(None)
    assert {name: list(tensor.shape) for name, tensor in model.state_dict().items()} == published
    assert model.config == MegaLocConfig()


def test_images_with_no_more_patches_than_clusters_are_refused_with_a_clear_error(megaloc_tiny):
    with pytest.raises(ValueError, match="more patch tokens than clusters"):
        megaloc_tiny(torch.zeros(1, 3, 28, 56))  # 2 x 4 = 8 patches for 8 clusters


def test_a_weights_file_without_config_is_the_published_architecture_and_mismatches_loudly(megaloc_tiny_dir: Path):
    with pytest.raises(CheckpointMismatchError, match="does not match the MegaLoc architecture"):
        load_megaloc(megaloc_tiny_dir / "model.safetensors")


def test_a_weights_file_with_an_explicit_config_loads(megaloc_tiny_dir: Path, expected):
    config = json.loads((megaloc_tiny_dir / "config.json").read_text())
    model = load_megaloc(megaloc_tiny_dir / "model.safetensors", config=config)
    with torch.no_grad():
        descriptors = model(torch.from_numpy(expected["input_a"]))
    assert _max_error(descriptors, expected["descriptor_a"]) <= PARITY_TOLERANCE


def test_hub_id_offline_with_an_empty_cache_says_which_file_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as raised:
        load_megaloc("gberton/MegaLoc")
    assert time.monotonic() - started < 10, "an offline lookup must not wait on the network"
    message = str(raised.value)
    assert "model.safetensors" in message and "gberton/MegaLoc" in message and "MIT" in message
    assert "hf download gberton/MegaLoc" in message


def test_batched_descriptors_of_unit_range_frames_match_the_original(megaloc_tiny, expected):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    frames = torch.from_numpy(expected["input_a"]) * std + mean  # back to [0, 1]-style pixels, 322x434
    descriptors = megaloc_descriptors(megaloc_tiny, frames, long_side=434, batch_size=2)
    assert descriptors.dtype == torch.float32 and descriptors.shape == (3, megaloc_tiny.config.feat_dim)
    assert _max_error(descriptors, expected["descriptor_a"]) <= PARITY_TOLERANCE


def test_batched_descriptors_do_not_depend_on_the_batch_size(megaloc_tiny):
    frames = torch.rand(5, 3, 100, 150, generator=torch.Generator().manual_seed(0))
    one_by_one = megaloc_descriptors(megaloc_tiny, frames, long_side=140, batch_size=1)
    all_at_once = megaloc_descriptors(megaloc_tiny, frames, long_side=140, batch_size=8)
    torch.testing.assert_close(one_by_one, all_at_once, atol=1e-5, rtol=0)
    torch.testing.assert_close(one_by_one.norm(dim=-1), torch.ones(5))


def test_low_precision_autocast_keeps_descriptors_close_and_float32(megaloc_tiny):
    frames = torch.rand(2, 3, 100, 150, generator=torch.Generator().manual_seed(1))
    reference = megaloc_descriptors(megaloc_tiny, frames, long_side=140)
    reduced = megaloc_descriptors(megaloc_tiny, frames, long_side=140, dtype=torch.bfloat16)
    assert reduced.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(reduced, reference).min() > 0.99


def test_frames_are_resized_to_the_long_side_on_the_patch_grid():
    assert descriptor_size(392, 518, 322) == (238, 322)
    assert descriptor_size(518, 392, 322) == (322, 238)
    assert descriptor_size(10, 1000, 322) == (14, 322)


def test_frames_and_model_on_different_devices_are_refused(megaloc_tiny):
    with torch.device("meta"):
        elsewhere = build_megaloc(megaloc_tiny.config)
    with pytest.raises(ValueError, match="move one of them"):
        megaloc_descriptors(elsewhere, torch.rand(1, 3, 140, 140))
