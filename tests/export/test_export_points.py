"""The point cloud: confidence filter, padding excluded, voxel downsampling to a budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggt_sparse_ns.export.config import ExportConfig, ExportError
from vggt_sparse_ns.export.points import (
    PointCloud,
    build_point_cloud,
    confidence_threshold,
    confident_pixels,
    voxel_downsample,
)
from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

HEIGHT, WIDTH = 28, 42
PADDED = ImageTransform((84, 48), (42, 24), (0, 0), (0, 2), (WIDTH, HEIGHT))
"""Model rows 0-1 and 26-27 are padding."""


def _plane_reconstruction(frames: int = 2, seed: int = 0) -> Reconstruction:
    """Cameras looking straight at the plane z = 2 (VGGT world), padded rows carrying wrong depth."""
    rng = np.random.default_rng(seed)
    poses = np.zeros((frames, 3, 4), np.float32)
    poses[:, :, :3] = np.eye(3)
    poses[:, 0, 3] = -0.1 * np.arange(frames)
    intrinsics = np.tile(np.array([[30.0, 0, 21], [0, 30, 14], [0, 0, 1]], np.float32), (frames, 1, 1))
    depth = np.full((frames, HEIGHT, WIDTH), 2.0, np.float32)
    depth[:, :2] = depth[:, -2:] = 50.0
    colors = rng.integers(0, 256, (frames, HEIGHT, WIDTH, 3), dtype=np.uint8)
    return Reconstruction(
        image_paths=[Path(f"{i}.png") for i in range(frames)],
        transforms=[PADDED] * frames,
        T_camera_world=poses,
        intrinsics=intrinsics,
        depth=depth,
        depth_conf=rng.uniform(1.0, 3.0, (frames, HEIGHT, WIDTH)).astype(np.float32),
        colors=colors,
    )


def _cloud(reconstruction: Reconstruction, config: ExportConfig) -> PointCloud:
    return build_point_cloud(
        reconstruction, confident_pixels(reconstruction, config.point_source, config), config.max_points
    )


def test_threshold_is_the_percentile_over_image_pixels_but_never_below_the_minimum() -> None:
    confidence = np.zeros((1, HEIGHT, WIDTH), np.float32)
    confidence[0, 2:-2] = np.arange(24 * WIDTH).reshape(24, WIDTH)
    confidence[0, :2] = 1e6  # padding must not move the percentile
    assert confidence_threshold(confidence, [PADDED], 50.0, 0.0) == pytest.approx(np.median(np.arange(24 * WIDTH)))
    assert confidence_threshold(confidence, [PADDED], 50.0, 5000.0) == 5000.0
    assert confidence_threshold(confidence, [PADDED], 0.0, -1.0) == 0.0


def test_points_come_from_image_pixels_above_the_threshold_and_lie_on_the_predicted_surface() -> None:
    reconstruction = _plane_reconstruction()
    reconstruction.depth_conf[:, 2:-2] = 2.0
    reconstruction.depth_conf[0, 10, 5] = 1.0
    cloud = _cloud(reconstruction, ExportConfig(confidence_percentile=0.0, min_confidence=1.5))
    assert len(cloud) == 2 * 24 * WIDTH - 1
    np.testing.assert_allclose(cloud.xyz[:, 2], 2.0, atol=1e-6)
    rows, cols = (cloud.pixel[:, 1] - 0.5).astype(int), (cloud.pixel[:, 0] - 0.5).astype(int)
    assert rows.min() == 2 and rows.max() == HEIGHT - 3
    assert not ((cloud.frame == 0) & (rows == 10) & (cols == 5)).any()
    np.testing.assert_array_equal(cloud.rgb, reconstruction.colors[cloud.frame, rows, cols])
    # the camera sees x = (u - cx) / fx * z from its centre at x = 0.1 * frame
    expected_x = (cloud.pixel[:, 0] - 21) / 30 * 2.0 + 0.1 * cloud.frame
    np.testing.assert_allclose(cloud.xyz[:, 0], expected_x, atol=1e-5)


def test_point_source_points_takes_the_point_map_and_needs_it() -> None:
    reconstruction = _plane_reconstruction(frames=1)
    with pytest.raises(ExportError, match="world points"):
        _cloud(reconstruction, ExportConfig(point_source="points"))
    reconstruction.world_points = np.full((1, HEIGHT, WIDTH, 3), 3.0, np.float32)
    reconstruction.world_points_conf = np.full((1, HEIGHT, WIDTH), 2.0, np.float32)
    cloud = _cloud(reconstruction, ExportConfig(point_source="points", confidence_percentile=0.0))
    np.testing.assert_array_equal(cloud.xyz, 3.0)


def test_no_confident_pixel_is_an_error_naming_the_flag() -> None:
    with pytest.raises(ExportError, match="confidence"):
        _cloud(_plane_reconstruction(), ExportConfig(confidence_percentile=0.0, min_confidence=10.0))


def test_non_finite_or_non_positive_depth_is_never_exported() -> None:
    reconstruction = _plane_reconstruction(frames=1)
    reconstruction.depth[0, 5, :10] = np.nan
    reconstruction.depth[0, 6, :10] = -1.0
    reconstruction.depth_conf[0, 7, :10] = np.inf
    cloud = _cloud(reconstruction, ExportConfig(confidence_percentile=0.0))
    assert np.isfinite(cloud.xyz).all() and len(cloud) == 24 * WIDTH - 20


def test_voxel_downsampling_keeps_the_most_confident_point_of_each_voxel_within_the_budget() -> None:
    rng = np.random.default_rng(4)
    xyz = rng.uniform(0, 1, (20_000, 3)).astype(np.float32)
    xyz[:, 2] = 0.0  # a surface
    confidence = rng.uniform(1, 2, len(xyz)).astype(np.float32)
    chosen, voxel_size = voxel_downsample(xyz, confidence, 1000)
    assert 0.5 * 1000 <= len(chosen) <= 1000 and voxel_size > 0
    assert (np.diff(chosen) > 0).all()
    cells = np.floor((xyz - xyz.min(axis=0)) / voxel_size).astype(np.int64)
    keys = cells[:, 0] * 10**6 + cells[:, 1]
    assert len(np.unique(keys[chosen])) == len(chosen), "one point per voxel"
    best = {}
    for index, key in enumerate(keys):
        if key not in best or confidence[index] > confidence[best[key]]:
            best[key] = index
    assert sorted(best.values()) == chosen.tolist()


def test_voxel_downsampling_is_deterministic_and_leaves_small_clouds_alone() -> None:
    rng = np.random.default_rng(5)
    xyz = rng.normal(size=(5000, 3)).astype(np.float32)
    confidence = np.ones(len(xyz), np.float32)
    first, second = voxel_downsample(xyz, confidence, 700), voxel_downsample(xyz, confidence, 700)
    np.testing.assert_array_equal(first[0], second[0])
    assert len(first[0]) <= 700
    np.testing.assert_array_equal(voxel_downsample(xyz, confidence, 5000)[0], np.arange(5000))
    same = np.zeros((10, 3), np.float32)
    assert len(voxel_downsample(same, np.arange(10, dtype=np.float32), 3)[0]) == 1


def test_voxel_downsampling_copes_with_far_outliers() -> None:
    rng = np.random.default_rng(6)
    xyz = rng.uniform(0, 1, (5000, 3)).astype(np.float32)
    xyz[:3] = [[1e7, 0, 0], [0, 1e7, 0], [0, 0, -1e7]]
    chosen, _ = voxel_downsample(xyz, np.ones(len(xyz), np.float32), 1000)
    assert 100 <= len(chosen) <= 1000


def test_the_cloud_does_not_depend_on_how_many_frames_are_lifted_at_once() -> None:
    reconstruction = _plane_reconstruction(frames=5, seed=7)
    confident = confident_pixels(reconstruction, "depth", ExportConfig(confidence_percentile=0.0))
    one = build_point_cloud(reconstruction, confident, max_points=300, workers=1)
    many = build_point_cloud(reconstruction, confident, max_points=300, workers=3)
    assert 0 < len(one) <= 300 and len(np.unique(one.frame)) == 5, "candidates drawn from every frame"
    for name in ("xyz", "rgb", "confidence", "frame", "pixel"):
        np.testing.assert_array_equal(getattr(one, name), getattr(many, name))
    assert one.voxel_size == many.voxel_size
