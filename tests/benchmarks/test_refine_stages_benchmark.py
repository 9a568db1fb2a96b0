"""benchmarks/refine_stages.py with tiny settings: refine() alone on generated views with known cameras."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.refine_stages import RefineStagesBenchmark, known_cameras, main, nearest_camera_edges


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
