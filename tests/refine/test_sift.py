"""SIFT in PyTorch (refine/sift.py): keypoints and descriptors that survive a known rotation and scale change of a
photograph, and keypoints where pycolmap's SIFT finds them. The truth is the transform the views are rendered with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as photographs

from vggt_sparse_ns.refine import sift
from vggt_sparse_ns.refine.matching import mutual_nearest_neighbours
from vggt_sparse_ns.refine.sift import SiftFeatures, batch_multiple, detect_and_describe

VIEW_SIZE = (320, 240)
MARGIN = 8.0
"""Keypoints whose true position in the other view is nearer its border than this are not counted."""


def _photograph() -> np.ndarray:
    return np.asarray(Image.fromarray(photographs.astronaut()).convert("F"))  # 512x512 grey, 0..255


def _view(angle_degrees: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A 320x240 uint8 view of the photograph's centre turned by ``angle_degrees`` and scaled by ``scale``, and the
    [2, 3] map from the unturned view's continuous pixels to this one's (x' = s R (x - c) + c)."""
    angle = np.deg2rad(angle_degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    photo = _photograph()
    centre_view = np.array(VIEW_SIZE) / 2
    centre_photo = np.array(photo.shape[::-1]) / 2
    inverse = rotation.T / scale  # view -> photograph: x_p = R^T (x_v - c_v) / s + c_p
    shift = centre_photo - inverse @ centre_view
    coefficients = (*inverse[0], shift[0], *inverse[1], shift[1])
    image = Image.fromarray(photo, mode="F").transform(
        VIEW_SIZE, Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BICUBIC
    )
    forward = scale * rotation
    return np.clip(np.round(np.asarray(image)), 0, 255).astype(np.uint8), np.hstack(
        [forward, (centre_view - forward @ centre_view)[:, None]]
    )


def _detect(*images: np.ndarray, max_features: int = 4096) -> list[SiftFeatures]:
    return detect_and_describe(torch.from_numpy(np.stack(images)), max_features, upsample=True)


def _inside(points: np.ndarray) -> np.ndarray:
    width, height = VIEW_SIZE
    return (
        (points[:, 0] > MARGIN)
        & (points[:, 0] < width - MARGIN)
        & (points[:, 1] > MARGIN)
        & (points[:, 1] < height - MARGIN)
    )


def _repeatability(a: SiftFeatures, b: SiftFeatures, mapping: np.ndarray, smallest_scale: float = 0.0) -> float:
    """Share of a's keypoints (of at least ``smallest_scale``) whose true position in b lies within 1.5 px of one of
    b's keypoints."""
    mapped = a.keypoints.double().numpy() @ mapping[:, :2].T + mapping[:, 2]
    counted = _inside(mapped) & (a.scales.numpy() >= smallest_scale)
    nearest = np.linalg.norm(mapped[counted][:, None] - b.keypoints.numpy()[None], axis=2).min(axis=1)
    return float(np.mean(nearest < 1.5))


def _correct_matches(a: SiftFeatures, b: SiftFeatures, mapping: np.ndarray) -> tuple[int, float]:
    """Mutual nearest neighbours passing the 0.8 ratio test: their count, and the share within 3 px of the truth."""
    _, index_a, index_b = mutual_nearest_neighbours(
        a.descriptors[None],
        b.descriptors[None],
        torch.tensor([len(a.keypoints)]),
        torch.tensor([len(b.keypoints)]),
        0.8,
    )
    mapped = a.keypoints[index_a].double().numpy() @ mapping[:, :2].T + mapping[:, 2]
    errors = np.linalg.norm(mapped - b.keypoints[index_b].numpy(), axis=1)
    return len(errors), float(np.mean(errors < 3.0))


@pytest.fixture(scope="module")
def upright() -> tuple[np.ndarray, SiftFeatures]:
    image, _ = _view(0.0, 1.0)
    return image, _detect(image)[0]


@pytest.mark.parametrize("angle", [90.0, 30.0])
def test_keypoints_and_matches_survive_a_rotation_of_the_photograph(upright, angle) -> None:
    _, a = upright
    image, mapping = _view(angle, 1.0)
    (b,) = _detect(image)
    assert len(a.keypoints) > 300
    assert _repeatability(a, b, mapping) >= 0.75  # measured 0.97 (90 degrees), 0.85 (30 degrees)
    matches, correct = _correct_matches(a, b, mapping)
    assert matches >= 0.4 * len(a.keypoints)
    assert correct >= 0.9  # measured 0.995, 0.986


def test_keypoints_and_matches_survive_a_scale_change_to_0_7(upright) -> None:
    _, a = upright
    image, mapping = _view(0.0, 0.7)
    (b,) = _detect(image)
    # Keypoints finer than the smallest scale found in b (0.8 px) once shrunk 0.7x cannot be found again.
    assert _repeatability(a, b, mapping, smallest_scale=2.0) >= 0.6  # measured 0.79
    matches, correct = _correct_matches(a, b, mapping)
    assert matches >= 0.25 * len(a.keypoints)  # measured 0.41
    assert correct >= 0.9  # measured 0.97


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
    ],
)
def test_keypoints_lie_where_pycolmaps_sift_finds_them(upright, device) -> None:
    import pycolmap

    image, ours = upright
    if device != "cpu":  # the same image described on the GPU (TF32 convolutions would move keypoints)
        ours = detect_and_describe(torch.from_numpy(image[None]).to(device), 4096, upsample=True)[0]
        ours = SiftFeatures(*(t.cpu() for t in ours))
    options = pycolmap.FeatureExtractionOptions()
    options.sift.max_num_features = 100_000
    options.sift.first_octave = -1  # as upsample=True
    keypoints, _ = pycolmap.FeatureExtractor.create(options, pycolmap.Device.cpu).extract_from_uint8_array(image)
    theirs = pycolmap.keypoints_to_matrix(keypoints)
    distances = np.linalg.norm(ours.keypoints.numpy()[:, None] - theirs[None, :, :2], axis=2)
    nearest, distance = distances.argmin(axis=1), distances.min(axis=1)
    # Measured: every keypoint of each within 1 px of one of the other's (621 and 622 keypoints).
    assert np.mean(distance < 2.0) >= 0.95, "nearly all of ours are pycolmap's"
    assert np.mean(distances.min(axis=0) < 2.0) >= 0.95, "nearly all of pycolmap's are ours"
    close = distance < 1.0
    offset = (ours.keypoints.numpy()[close] - theirs[nearest[close], :2]).mean(axis=0)
    assert np.abs(offset).max() < 0.05, f"same pixel convention (mean offset {offset})"
    assert np.median(ours.scales.numpy()[close] / theirs[nearest[close], 2]) == pytest.approx(1.0, abs=0.02)


def test_the_largest_scale_keypoints_are_kept_up_to_max_features(upright) -> None:
    image, every = upright
    (capped,) = _detect(image, max_features=100)
    assert len(capped.keypoints) == 100 < len(every.keypoints)
    assert capped.scales.min() >= torch.sort(every.scales, descending=True).values[99] - 1e-4


def test_descriptors_are_rootsift_unit_rows(upright) -> None:
    _, features = upright
    descriptors = features.descriptors
    assert descriptors.shape == (len(features.keypoints), 128) and descriptors.dtype == torch.float32
    torch.testing.assert_close(descriptors.norm(dim=1), torch.ones(len(descriptors)), rtol=1e-5, atol=1e-5)
    assert (descriptors >= 0).all()


def test_images_of_a_batch_are_described_as_when_alone(upright) -> None:
    image, alone = upright
    turned, _ = _view(30.0, 1.0)
    first, _ = _detect(image, turned)
    torch.testing.assert_close(first.keypoints, alone.keypoints, rtol=0, atol=1e-3)  # float32 convolutions
    torch.testing.assert_close(first.descriptors, alone.descriptors, rtol=0, atol=1e-4)


def test_keypoints_described_in_small_chunks_come_out_as_in_one(upright, monkeypatch) -> None:
    image, whole = upright
    monkeypatch.setattr(sift, "KEYPOINTS_PER_CHUNK", 37)
    (chunked,) = _detect(image)
    torch.testing.assert_close(chunked.keypoints, whole.keypoints, rtol=0, atol=0)
    torch.testing.assert_close(chunked.descriptors, whole.descriptors, rtol=0, atol=1e-6)


def test_batches_grow_with_a_cuda_devices_free_memory_and_not_elsewhere(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (40 << 30, 80 << 30))
    assert batch_multiple(torch.device("cuda")) == 5  # a quarter of 40 GiB, 2 GiB per multiple
    assert batch_multiple(torch.device("cpu")) == 1
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (1 << 30, 24 << 30))
    assert batch_multiple(torch.device("cuda")) == 1


@pytest.mark.parametrize("size", [(64, 48), (5, 3)], ids=["flat", "smaller than an octave"])
def test_an_image_without_texture_has_no_keypoints(size) -> None:
    width, height = size
    (found,) = detect_and_describe(torch.full((1, height, width), 128, dtype=torch.uint8), 100)
    assert found.keypoints.shape == (0, 2) and found.descriptors.shape == (0, 128) and found.scales.shape == (0,)
