"""load_scene: an output folder of `ns-process-data vggt-sparse` to the arrays the viewer draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_reconstruction import write_ply

from vggt_sparse_ns.export.ply import read_ply
from vggt_sparse_ns.viewer import ViewerConfig, load_scene
from vggt_sparse_ns.viewer.errors import ReconstructionFolderError
from vggt_sparse_ns.viewer.scene import frustum_scale, load_image

TARGET = np.array([0.0, 0.0, 0.8])  # where every synthetic camera looks


def test_cameras_keep_the_transforms_world_frame_with_opencv_axes(synthetic_output: Path):
    scene = load_scene(synthetic_output)
    frames = json.loads((synthetic_output / "transforms.json").read_text())["frames"]
    c2w = np.asarray([frame["transform_matrix"] for frame in frames])
    np.testing.assert_allclose(scene.camera_centres, c2w[:, :3, 3])
    forward = scene.T_world_camera[:, :3, 2]  # OpenCV +z: the viewing direction
    to_target = TARGET - scene.camera_centres
    cosine = np.sum(forward * to_target, axis=1) / np.linalg.norm(to_target, axis=1)
    np.testing.assert_allclose(cosine, 1.0, atol=1e-9)
    down = scene.T_world_camera[:, :3, 1]  # OpenCV +y points down in the image
    assert np.all(down[:, 2] < 0)
    np.testing.assert_allclose(scene.up_direction, [0.0, 0.0, 1.0], atol=1e-6)


def test_intrinsics_give_vertical_fov_and_aspect(make_output):
    for per_frame in (False, True):
        scene = load_scene(make_output(cameras=3, points=100, per_frame_intrinsics=per_frame))
        np.testing.assert_allclose(scene.vertical_fov, 2 * np.arctan(120 / (0.9 * 320)))
        np.testing.assert_allclose(scene.aspect, 320 / 240)


def test_points_colours_and_confidences_come_from_the_ply(synthetic_output: Path):
    scene = load_scene(synthetic_output)
    vertices = read_ply(synthetic_output / "sparse_pc.ply")
    assert scene.total_points == len(scene.points) == 5_000
    np.testing.assert_array_equal(scene.points[:, 2], vertices["z"])
    np.testing.assert_array_equal(scene.colours[:, 0], vertices["red"])
    np.testing.assert_array_equal(scene.confidences, vertices["confidence"])


def test_max_points_takes_the_same_random_subset_every_time(synthetic_output: Path):
    capped = load_scene(synthetic_output, ViewerConfig(max_points=700))
    again = load_scene(synthetic_output, ViewerConfig(max_points=700))
    full = load_scene(synthetic_output)
    assert len(capped.points) == 700 and capped.total_points == 5_000
    np.testing.assert_array_equal(capped.points, again.points)
    rows = {tuple(row) for row in np.concatenate([full.points, full.confidences[:, None]], axis=1).tolist()}
    capped_rows = np.concatenate([capped.points, capped.confidences[:, None]], axis=1).tolist()
    assert all(tuple(row) in rows for row in capped_rows)
    assert np.ptp(capped.points[:, 0]) > 0.9 * np.ptp(full.points[:, 0])  # spread over the cloud, not a prefix


def test_non_finite_points_are_dropped(tmp_path: Path, make_output):
    root = make_output(cameras=2, points=50, with_confidence=False)
    points = np.array([[0, 0, 0], [np.nan, 1, 1], [1, np.inf, 1], [2, 2, 2]], dtype=np.float32)
    write_ply(root / "sparse_pc.ply", points, np.zeros((4, 3), dtype=np.uint8), None)
    scene = load_scene(root)
    np.testing.assert_array_equal(scene.points, points[[0, 3]])
    assert scene.confidences is None and scene.total_points == 4


def test_thumbnails_come_from_the_smallest_downscale_large_enough(make_output):
    root = make_output(cameras=2, points=100)  # 320x240 images; downscales 160x120, 80x60, 40x30
    assert load_scene(root).thumbnails[0].shape == (96, 128, 3)  # from images_2, shrunk to 128 px
    small = load_scene(root, ViewerConfig(thumbnail_size=32))
    assert small.thumbnails[0].shape == (24, 32, 3)
    assert small.image_files[0][0] == root / "images_8" / "frame_00001.png"
    (root / "images_8" / "frame_00002.png").unlink()
    assert load_scene(root, ViewerConfig(thumbnail_size=32)).image_files[1][0] == root / "images_4" / "frame_00002.png"


@pytest.mark.filterwarnings("error")
def test_a_16000x12000_image_without_downscales_still_gives_a_thumbnail(huge_jpeg: Path):
    thumbnail = load_image((huge_jpeg,), 128)
    assert thumbnail is not None and thumbnail.shape == (96, 128, 3)


def test_missing_images_leave_untextured_cameras(make_output):
    root = make_output(cameras=2, points=100, downscales=())
    (root / "images" / "frame_00002.png").unlink()
    scene = load_scene(root)
    assert scene.thumbnails[0].shape == (96, 128, 3) and scene.thumbnails[1] is None


def test_graph_and_summary_are_optional(synthetic_output: Path, make_output):
    scene = load_scene(synthetic_output)
    saved = json.loads((synthetic_output / "vggt" / "graph.json").read_text())["edges"]
    assert sorted(map(tuple, scene.edges.tolist())) == sorted(map(tuple, saved))
    assert scene.summary == json.loads((synthetic_output / "vggt" / "summary.json").read_text())
    bare = load_scene(make_output(cameras=3, points=100, with_graph=False, with_summary=False))
    assert bare.edges is None and bare.summary is None


def test_a_graph_marked_dense_means_no_graph(make_output):
    root = make_output(cameras=3, points=100)
    (root / "vggt" / "graph.json").write_text(json.dumps({"num_frames": 3, "dense": True, "edges": []}))
    assert load_scene(root).edges is None


def test_frustum_scale_is_a_fraction_of_the_median_nearest_camera_distance():
    centres = np.array([[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [7, 0, 0]])  # nearest distances 1, 1, 2, 4
    assert frustum_scale(centres, scene_extent=10.0, fraction=0.5) == pytest.approx(0.5 * 1.5)


def test_frustum_scale_has_a_floor_for_dense_paths_and_a_default_for_one_camera():
    dense = np.array([[0.001 * index, 0.0, 0.0] for index in range(100)])
    assert frustum_scale(dense, scene_extent=10.0, fraction=0.5) == pytest.approx(0.015 * 10.0)
    assert frustum_scale(dense[:1], scene_extent=10.0, fraction=0.5) == pytest.approx(0.5)


def _break(root: Path, what: str) -> None:
    transforms_path = root / "transforms.json"
    transforms = json.loads(transforms_path.read_text())
    if what == "no transforms.json":
        transforms_path.unlink()
    elif what == "no ply file":
        (root / "sparse_pc.ply").unlink()
    elif what == "no ply_file_path":
        transforms.pop("ply_file_path")
    elif what == "no frames":
        transforms["frames"] = []
    elif what == "no focal length":
        transforms.pop("fl_y")
    elif what == "edge out of range":
        (root / "vggt" / "graph.json").write_text(json.dumps({"edges": [[0, 1], [1, 3]]}))
    elif what == "edges not pairs":
        (root / "vggt" / "graph.json").write_text(json.dumps({"pairs": [[0, 1]]}))
    elif what == "summary not an object":
        (root / "vggt" / "summary.json").write_text("[1, 2]")
    elif what == "transforms not json":
        transforms_path.write_text("{frames: oops")
    if transforms_path.is_file() and what != "transforms not json":
        transforms_path.write_text(json.dumps(transforms))


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("no transforms.json", "no transforms.json in .*: pass the output folder of `ns-process-data vggt-sparse`"),
        ("no ply file", "point cloud not found: .*sparse_pc.ply"),
        ("no ply_file_path", "has no 'ply_file_path'"),
        ("no frames", "lists no frames"),
        ("no focal length", "frame 0 has no 'fl_y'"),
        ("edge out of range", "edges must join two different frames among the 3"),
        ("edges not pairs", r"expected \{\"edges\""),
        ("summary not an object", "must hold a JSON object"),
        ("transforms not json", "cannot read the camera file"),
    ],
)
def test_bad_folders_raise_one_clear_error(make_output, what: str, message: str):
    root = make_output(cameras=3, points=100)
    _break(root, what)
    with pytest.raises(ReconstructionFolderError, match=message):
        load_scene(root)


def test_missing_folder_is_named(tmp_path: Path):
    with pytest.raises(ReconstructionFolderError, match="output folder not found"):
        load_scene(tmp_path / "nowhere")
