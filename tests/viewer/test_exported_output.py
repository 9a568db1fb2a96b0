"""The viewer reads what the project's own exporter writes (the real `ns-process-data vggt-sparse` files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from export.synthetic_scene import tiny_dataset  # tests/ is on sys.path: tests/conftest.py is there

from vggt_sparse_ns.export import ExportConfig, export_dataset
from vggt_sparse_ns.export.run_info import write_run_summary
from vggt_sparse_ns.viewer import load_scene

FRAMES = 4


def test_exported_dataset_loads_with_its_cameras_points_graph_and_summary(tmp_path: Path):
    reconstruction, names = tiny_dataset(tmp_path, FRAMES)
    exported = export_dataset(reconstruction, tmp_path, names, ExportConfig(max_points=500))
    write_run_summary(tmp_path, {"frames": 4, "attention": reconstruction.attention})

    scene = load_scene(tmp_path)
    assert len(scene.T_world_camera) == FRAMES
    assert len(scene.points) == exported.num_points and scene.confidences is not None
    assert scene.edges.tolist() == [[0, 1], [1, 2], [2, 3]]
    assert scene.summary["frames"] == 4 and scene.summary["attention"] == {"strategy": "covisibility"}
    np.testing.assert_allclose(np.linalg.norm(np.diff(scene.camera_centres, axis=0), axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(scene.vertical_fov, 2 * np.arctan(28 / 80), rtol=1e-5)  # 40 px focal at half size
    assert all(thumbnail is not None and thumbnail.shape == (56, 84, 3) for thumbnail in scene.thumbnails)
    # Every point was 2 units in front of some camera: the loaded points and poses share one world frame.
    depth_along_view = np.einsum(
        "snk,sk->sn",
        scene.points[None, :, :] - scene.camera_centres[:, None, :],
        scene.T_world_camera[:, :3, 2],
    )
    assert np.all(np.min(np.abs(depth_along_view - 2.0), axis=0) < 1e-3)
