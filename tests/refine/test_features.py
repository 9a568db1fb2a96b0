"""SIFT features of the image files, in keypoints of the full-resolution image."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from textured_scene import make_scene
from unusual_images import write_png16

from vggt_sparse_ns.refine.features import extract_features, feature_extractor, read_grey


def test_worker_processes_give_the_same_features_as_one_process(tmp_path: Path, caplog) -> None:
    paths = make_scene(tmp_path, frames=3).truth.image_paths
    alone = extract_features(paths, max_image_size=1600, max_features=500, workers=1)
    with caplog.at_level(logging.WARNING):
        spread = extract_features(paths, max_image_size=1600, max_features=500, workers=2)
    assert not caplog.records, "the worker processes ran (no fallback to this process)"
    for a, b in zip(alone, spread, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.descriptors, b.descriptors)
        assert len(a) > 100 and a.size == (320, 240)
        np.testing.assert_allclose(np.linalg.norm(a.descriptors, axis=1), 1.0, rtol=1e-5)


def test_affine_shape_features_are_computed_in_the_worker_processes_too(tmp_path: Path, caplog) -> None:
    paths = make_scene(tmp_path, frames=2).truth.image_paths
    disks = extract_features(paths, max_image_size=1600, max_features=500, workers=1)
    alone = extract_features(paths, max_image_size=1600, max_features=500, affine_shape=True, workers=1)
    with caplog.at_level(logging.WARNING):
        spread = extract_features(paths, max_image_size=1600, max_features=500, affine_shape=True, workers=2)
    assert not caplog.records, "the worker processes ran (no fallback to this process)"
    for a, b, disk in zip(alone, spread, disks, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.descriptors, b.descriptors)
        assert len(a) > 100
        assert len(a) != len(disk) or not np.array_equal(a.descriptors, disk.descriptors)


@pytest.mark.parametrize("extractor", ["pycolmap", "torch"])
def test_keypoints_detected_on_a_downscaled_image_are_in_full_resolution_pixels(tmp_path: Path, extractor) -> None:
    small = make_scene(tmp_path / "small", frames=1).truth.image_paths[0]
    large = tmp_path / "large.png"
    Image.open(small).resize((640, 480), Image.Resampling.BICUBIC).save(large)
    settings = {"max_image_size": 320, "max_features": 500, "extractor": extractor}
    (found,) = extract_features([large], **settings)  # detected at 320x240
    (reference,) = extract_features([small], **settings)
    assert found.size == (640, 480)
    # Same detection image (up to resampling), keypoints twice as far from the origin.
    nearest = np.linalg.norm(found.keypoints[:, None] / 2 - reference.keypoints[None], axis=2).min(1)
    assert np.median(nearest) < 0.5


def test_a_16_bit_gray_image_is_read_for_sift_rounded_to_8_bits_as_the_model_sees_it(tmp_path: Path) -> None:
    grey, size = read_grey(write_png16(tmp_path / "deep.png", (448,)), max_image_size=1600)
    assert size == (64, 48)
    assert (grey == 2).all(), "448 / 257 = 1.74 rounds to 2 (PIL's own conversion clips it to 255: a white image)"


def test_the_torch_sift_gives_every_image_its_own_features_in_input_order(tmp_path: Path) -> None:
    paths = make_scene(tmp_path, frames=3).truth.image_paths
    odd_size = tmp_path / "odd.png"
    Image.open(paths[1]).resize((200, 150)).save(odd_size)
    mixed = [paths[0], odd_size, paths[2]]
    together = extract_features(mixed, max_image_size=1600, max_features=300, extractor="torch")
    for path, features in zip(mixed, together, strict=True):
        (alone,) = extract_features([path], max_image_size=1600, max_features=300, extractor="torch")
        assert features.size == alone.size and len(features) == len(alone) > 50
        np.testing.assert_allclose(features.keypoints, alone.keypoints, atol=1e-3)
        np.testing.assert_allclose(np.linalg.norm(features.descriptors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("choice", "device", "affine_shape", "runs"),
    [
        ("auto", "cuda", False, "torch"),
        ("auto", "mps", False, "torch"),
        ("auto", "cpu", False, "pycolmap"),
        ("auto", "cuda", True, "pycolmap"),
        ("torch", "cpu", False, "torch"),
        ("pycolmap", "cuda", False, "pycolmap"),
    ],
)
def test_auto_runs_the_torch_sift_on_a_gpu_and_pycolmaps_on_the_cpu_or_for_affine_shapes(
    choice, device, affine_shape, runs
) -> None:
    assert feature_extractor(choice, torch.device(device), affine_shape) == runs


def test_the_torch_sift_finds_nothing_on_a_flat_image_file(tmp_path: Path) -> None:
    flat = tmp_path / "flat.png"
    Image.new("RGB", (96, 64), (90, 90, 90)).save(flat)
    (features,) = extract_features([flat], max_image_size=1600, max_features=100, extractor="torch")
    assert features.size == (96, 64) and len(features) == 0
    assert features.keypoints.shape == (0, 2) and features.descriptors.shape == (0, 128)


def test_where_the_torch_sift_fails_on_its_device_pycolmaps_runs_instead_with_one_warning(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    from vggt_sparse_ns.refine import features as features_module

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(features_module, "detect_and_describe", out_of_memory)
    paths = make_scene(tmp_path, frames=2).truth.image_paths
    with caplog.at_level(logging.WARNING):
        found = extract_features(paths, max_image_size=1600, max_features=300, extractor="torch", workers=1)
    expected = extract_features(paths, max_image_size=1600, max_features=300, extractor="pycolmap", workers=1)
    for a, b in zip(found, expected, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert [r.getMessage() for r in caplog.records if "pycolmap's SIFT runs on the CPU instead" in r.getMessage()]
