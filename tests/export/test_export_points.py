"""The point cloud: confidence filter, padding excluded, voxel downsampling to a budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_scene import random_rotation

from vggt_sparse_ns.export import points as points_module
from vggt_sparse_ns.export.config import ExportConfig, ExportError
from vggt_sparse_ns.export.geometry import model_pixel_centres, unproject
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


def _turning_reconstruction(frames: int, seed: int) -> Reconstruction:
    """Cameras turned and moved at random, seeing smooth random depth with random confidences."""
    reconstruction = _plane_reconstruction(frames, seed)
    rng = np.random.default_rng(seed)
    for pose in reconstruction.T_camera_world:
        pose[:, :3] = random_rotation(rng)
        pose[:, 3] = rng.normal(size=3)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    for depth in reconstruction.depth:
        depth[:] = 2.0 + np.sin(cols / rng.uniform(3, 9)) * np.cos(rows / rng.uniform(3, 9))
    return reconstruction


def _cloud(reconstruction: Reconstruction, config: ExportConfig, device: str = "cpu") -> PointCloud:
    confident = confident_pixels(reconstruction, config.point_source, config, device=device)
    return build_point_cloud(reconstruction, confident, config.max_points, device=device)


def _clouds_equal(first: PointCloud, second: PointCloud) -> None:
    for name in ("xyz", "rgb", "confidence", "frame", "pixel"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert (first.voxel_size, first.confidence_threshold) == (second.voxel_size, second.confidence_threshold)


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
    reconstruction.depth[0, 8, :10] = np.inf
    reconstruction.depth_conf[0, 7, :10] = np.inf
    cloud = _cloud(reconstruction, ExportConfig(confidence_percentile=0.0))
    assert np.isfinite(cloud.xyz).all() and len(cloud) == 24 * WIDTH - 30


def test_voxel_downsampling_keeps_the_most_confident_point_of_each_voxel_within_the_budget() -> None:
    rng = np.random.default_rng(4)
    xyz = rng.uniform(0, 1, (20_000, 3)).astype(np.float32)
    xyz[:, 2] = 0.0  # a surface
    confidence = rng.uniform(1, 2, len(xyz)).astype(np.float32)
    chosen, voxel_size = voxel_downsample(torch.from_numpy(xyz), torch.from_numpy(confidence), 1000)
    chosen = chosen.numpy()
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
    xyz = torch.from_numpy(rng.normal(size=(5000, 3)).astype(np.float32))
    confidence = torch.ones(len(xyz))
    first, second = voxel_downsample(xyz, confidence, 700), voxel_downsample(xyz, confidence, 700)
    torch.testing.assert_close(first[0], second[0], rtol=0, atol=0)
    assert len(first[0]) <= 700
    torch.testing.assert_close(voxel_downsample(xyz, confidence, 5000)[0], torch.arange(5000), rtol=0, atol=0)
    assert voxel_downsample(torch.zeros(10, 3), torch.arange(10.0), 3)[0].tolist() == [9]


def test_voxel_downsampling_copes_with_far_outliers() -> None:
    rng = np.random.default_rng(6)
    xyz = rng.uniform(0, 1, (5000, 3)).astype(np.float32)
    xyz[:3] = [[1e7, 0, 0], [0, 1e7, 0], [0, 0, -1e7]]
    chosen, voxel_size = voxel_downsample(torch.from_numpy(xyz), torch.ones(len(xyz)), 1000)
    assert 100 <= len(chosen) <= 1000
    cells = np.floor((xyz[chosen.numpy()] - xyz.min(axis=0)) / voxel_size)
    assert len(np.unique(cells, axis=0)) == len(chosen), "one point per voxel in a grid of over 2^62 cells"


@pytest.mark.parametrize("far", [1, 2**32], ids=["beyond 2^31 cells", "beyond 2^64 cells"])
def test_voxels_are_told_apart_however_many_cells_the_grid_spans(far: int) -> None:
    # 2^16 x 2^16 cells across y and z: voxel (far, 0, 0) lies a multiple of 2^32 cells after voxel (0, 0, 0)
    offsets = torch.tensor([[0.0, 0.0, 0.0], [far, 0.0, 0.0], [0.0, 2**16 - 1, 2**16 - 1]])
    assert len(torch.unique(points_module._voxel_keys(offsets.T.contiguous(), 1.0))) == 3


def test_the_cloud_does_not_depend_on_how_many_frames_are_processed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    reconstruction = _plane_reconstruction(frames=5, seed=7)
    config = ExportConfig(confidence_percentile=0.0, max_points=300)
    whole = _cloud(reconstruction, config)
    assert 0 < len(whole) <= 300 and len(np.unique(whole.frame)) == 5, "candidates drawn from every frame"
    for frames_at_once in (1, 2):
        monkeypatch.setattr(points_module, "CHUNK_PIXELS", frames_at_once * HEIGHT * WIDTH)
        _clouds_equal(_cloud(reconstruction, config), whole)


def test_a_downsampled_cloud_holds_the_most_confident_lifted_pixel_of_each_voxel() -> None:
    reconstruction = _turning_reconstruction(frames=3, seed=8)
    config = ExportConfig(confidence_percentile=40.0, max_points=500)
    confident = confident_pixels(reconstruction, "depth", config)
    candidates = points_module.CANDIDATES_PER_POINT * config.max_points
    assert config.max_points < confident.total <= candidates, "every confident pixel is a candidate"
    cloud = build_point_cloud(reconstruction, confident, config.max_points)
    assert 0.9 * config.max_points <= len(cloud) <= config.max_points
    # every point: a confident pixel, lifted through its centre with its frame's camera
    frames, rows, cols = np.nonzero(confident.keep.numpy())
    pixels = model_pixel_centres(torch.from_numpy(rows), torch.from_numpy(cols)).double()
    depth = torch.from_numpy(reconstruction.depth[frames, rows, cols]).double()
    cameras = (
        torch.from_numpy(np.asarray(array, np.float64))[frames]
        for array in (reconstruction.intrinsics, reconstruction.T_camera_world)
    )
    lifted = unproject(pixels, depth, *cameras).numpy().astype(np.float32)
    source = {(f, r, c): i for i, (f, r, c) in enumerate(zip(frames, rows, cols, strict=True))}
    point_rows, point_cols = (cloud.pixel[:, 1] - 0.5).astype(int), (cloud.pixel[:, 0] - 0.5).astype(int)
    members = np.array([source[key] for key in zip(cloud.frame, point_rows, point_cols, strict=True)])
    np.testing.assert_allclose(cloud.xyz, lifted[members], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(cloud.confidence, reconstruction.depth_conf[frames, rows, cols][members])
    np.testing.assert_array_equal(cloud.rgb, reconstruction.colors[frames, rows, cols][members])
    # one point per voxel of the grid anchored at the lifted pixels' corner, the most confident there
    cells = np.floor((lifted - lifted.min(axis=0)) / cloud.voxel_size).astype(np.int64)
    voxel = np.unique(cells, axis=0, return_inverse=True)[1].ravel()
    assert len(np.unique(voxel[members])) == len(cloud)
    confidence = reconstruction.depth_conf[frames, rows, cols]
    best = np.full(voxel.max() + 1, -np.inf)
    np.maximum.at(best, voxel, confidence)
    np.testing.assert_array_equal(confidence[members], best[voxel[members]])


def test_candidates_are_drawn_with_the_asked_probability_differently_in_every_frame() -> None:
    draw = points_module._candidate_draw(0.25, 40, 5000, "cpu")
    drawn = draw(slice(0, 40)).numpy()
    assert drawn.shape == (40, 5000)
    assert abs(drawn.mean() - 0.25) < 0.01
    assert np.abs(drawn.mean(axis=1) - 0.25).max() < 0.05
    overlap = (drawn[:-1] & drawn[1:]).mean(axis=1)
    assert np.abs(overlap - 0.25**2).max() < 0.03, "frames draw (nearly) independent pixels"
    np.testing.assert_array_equal(draw(slice(7, 9)).numpy(), drawn[7:9])
    np.testing.assert_array_equal(points_module._candidate_draw(0.25, 40, 5000, "cpu")(slice(0, 40)).numpy(), drawn)


def test_a_tiny_budget_still_gets_points() -> None:
    reconstruction = _plane_reconstruction(frames=60, seed=10)
    cloud = _cloud(reconstruction, ExportConfig(confidence_percentile=0.0, max_points=2))
    assert 1 <= len(cloud) <= 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU path of the point cloud")
@pytest.mark.parametrize("source", ["depth", "points"])
def test_the_cloud_built_on_the_gpu_is_the_one_built_on_the_cpu(source: str) -> None:
    reconstruction = _turning_reconstruction(frames=6, seed=9)
    reconstruction.world_points = np.random.default_rng(9).normal(size=(6, HEIGHT, WIDTH, 3)).astype(np.float32)
    reconstruction.world_points_conf = reconstruction.depth_conf[::-1].copy()
    config = ExportConfig(point_source=source, confidence_percentile=30.0, max_points=400)
    _clouds_equal(_cloud(reconstruction, config, "cuda"), _cloud(reconstruction, config, "cpu"))
