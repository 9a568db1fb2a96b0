"""benchmarks/refine_stages.py with tiny settings: refine() alone on generated views with known cameras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.refine import HEIGHT_OVER_PLANE, known_cameras, nearest_camera_edges
from benchmarks.refine_stages import RefineStagesBenchmark, main, plane_depth
from vggt_sparse_ns.images import ImageTransform


def test_the_known_cameras_put_frame_zero_at_the_origin_and_see_the_plane_in_front() -> None:
    T_camera_world, intrinsics = known_cameras(6, (320, 180))
    np.testing.assert_allclose(T_camera_world[0], np.eye(3, 4), atol=1e-12)
    np.testing.assert_allclose(
        np.einsum("sij,skj->sik", T_camera_world[:, :, :3], T_camera_world[:, :, :3]),
        np.tile(np.eye(3), (6, 1, 1)),
        atol=1e-12,
    )
    assert np.allclose(intrinsics[:, 0, 0], 0.8 * 320)


def test_the_frame_graph_links_each_frame_with_its_nearest_cameras() -> None:
    T_camera_world, _ = known_cameras(12, (320, 180))
    edges = nearest_camera_edges(T_camera_world, neighbors=2)
    assert np.all(edges[:, 0] < edges[:, 1])
    degree = np.bincount(edges.reshape(-1), minlength=12)
    assert degree.min() >= 2
    assert len(edges) <= 12 * 2


def test_a_tiny_run_records_the_split_and_moves_the_cameras_towards_the_truth(tmp_path: Path) -> None:
    settings = RefineStagesBenchmark(
        work_dir=tmp_path, frames=8, width=480, height=270, neighbors=4, output=tmp_path / "rows.json"
    )
    row = main(settings)
    assert json.loads(settings.output.read_text()) == [row]
    assert {"features", "matching", "verification", "triangulation", "bundle adjustment"} <= set(row["refine_split_s"])
    before, after = row["median_rotation_error_deg"]
    assert before > 1.0 and after * 5 <= before
    assert row["refinement"]["reprojection_error_px"] < 1.0


def test_the_plane_depth_puts_every_frames_pixels_on_one_plane_at_the_cameras_height() -> None:
    frames, size = 6, (320, 180)
    transform = ImageTransform(size, (40, 22), (0, 0), (0, 0), (40, 22))
    depth = plane_depth(frames, size, transform)
    T_camera_world, intrinsics = known_cameras(frames, size)
    cols, rows = np.meshgrid(np.arange(40) + 0.5, np.arange(22) + 0.5)
    pixels = np.stack([cols * 8, rows * 8, np.ones_like(cols)], axis=-1).reshape(-1, 3)
    points = []
    for frame in range(frames):
        rays = pixels @ np.linalg.inv(intrinsics[frame]).T * depth[frame].reshape(-1, 1)
        rotation, translation = T_camera_world[frame, :, :3], T_camera_world[frame, :, 3]
        points.append((rays - translation) @ rotation)  # world = R^T (camera - t)
    points = np.concatenate(points)
    centroid = points.mean(0)
    normal = np.linalg.svd(points - centroid)[2][-1]
    assert np.abs((points - centroid) @ normal).max() < 1e-6
    # Camera 0 (the world's origin) is HEIGHT_OVER_PLANE half-widths above the plane, one width being one unit.
    assert abs(centroid @ normal) == pytest.approx(HEIGHT_OVER_PLANE / 2, rel=1e-6)
