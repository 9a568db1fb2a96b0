"""evaluate(): the figures of whole camera sets with known answers, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from camera_sets import camera_set, in_transformed_world, random_cameras, rotation_about, write_pycolmap_model

from vggt_sparse_ns.evaluate.cameras import CameraSet
from vggt_sparse_ns.evaluate.errors import EvaluationError
from vggt_sparse_ns.evaluate.report import compare_cameras, evaluate


def _assert_perfect(report) -> None:
    relative = report.relative_pose
    assert all(value == 1.0 for value in relative.rotation_accuracy.values())
    assert all(value == 1.0 for value in relative.translation_accuracy.values())
    assert all(value == pytest.approx(1.0, abs=1e-9) for value in relative.auc.values())
    assert report.trajectory.rmse < 1e-9 * report.trajectory.extent
    assert report.trajectory.inliers == report.frames.matched
    assert report.focal_length.relative_error_max < 1e-12


def test_identical_cameras_score_perfectly() -> None:
    cameras = random_cameras(10)
    report = compare_cameras(cameras, cameras)
    _assert_perfect(report)
    assert report.relative_pose.pairs == 45 and report.frames.matched == 10
    assert sorted(report.relative_pose.auc) == [5.0, 15.0, 30.0]


def test_cameras_in_a_scaled_turned_and_moved_world_score_perfectly_after_alignment() -> None:
    reference = random_cameras(10)
    output = in_transformed_world(reference, 0.37, rotation_about([0.3, 1, -2], 140.0), [5.0, -2.0, 1.0])
    report = compare_cameras(output, reference)
    _assert_perfect(report)
    assert report.trajectory.scale == pytest.approx(1 / 0.37)


def test_one_lost_camera_leaves_the_others_aligned_and_counts_in_the_trajectory_error() -> None:
    reference = random_cameras(10, seed=5)
    T = reference.T_camera_world.copy()
    T[3, :, 3] += [30.0, 0.0, 0.0]  # camera 3 placed far away, same orientation
    output = CameraSet(reference.names, T, reference.focal_lengths, reference.sizes, "lost")
    report = compare_cameras(output, reference)
    centre_shift = np.linalg.norm(reference.T_camera_world[3, :, :3].T @ [30.0, 0.0, 0.0])
    assert report.trajectory.inliers == 9
    assert report.trajectory.max == pytest.approx(centre_shift)
    assert report.trajectory.median < 1e-9
    assert report.trajectory.rmse == pytest.approx(centre_shift / np.sqrt(10))
    assert report.relative_pose.rotation_accuracy[1.0] == 1.0


def test_a_focal_length_off_by_ten_percent_is_a_relative_error_of_a_tenth() -> None:
    reference = random_cameras(4)
    output = CameraSet(reference.names, reference.T_camera_world, reference.focal_lengths * 1.1, reference.sizes, "f")
    focal = compare_cameras(output, reference).focal_length
    assert focal.relative_error_median == pytest.approx(0.1) and focal.relative_error_max == pytest.approx(0.1)


def test_only_matched_frames_are_measured_and_the_rest_are_counted() -> None:
    reference = random_cameras(6)
    output = reference.subset(np.array([0, 1, 2, 3]))
    report = compare_cameras(output, reference)
    assert (report.frames.output, report.frames.reference, report.frames.matched) == (4, 6, 4)
    assert report.frames.missing_in_output == list(reference.names[4:])
    _assert_perfect(report)


def test_no_common_frame_is_refused_with_examples_of_both_names() -> None:
    output = random_cameras(4)
    reference = CameraSet(
        tuple(f"IMG_{i}.JPG" for i in range(4)), output.T_camera_world, output.focal_lengths, output.sizes, "ref"
    )
    with pytest.raises(EvaluationError, match="no frame of synthetic matches a frame of ref .*'IMG_0.JPG'"):
        compare_cameras(output, reference)


def test_fewer_than_three_matched_frames_are_refused() -> None:
    reference = random_cameras(5)
    with pytest.raises(EvaluationError, match="only 2 frame"):
        compare_cameras(reference.subset(np.array([0, 1])), reference)


def test_reference_cameras_at_one_point_are_refused() -> None:
    cameras = camera_set(np.tile(np.eye(3), (3, 1, 1)), np.zeros((3, 3)))
    with pytest.raises(EvaluationError, match="all sit at one point"):
        compare_cameras(random_cameras(3), cameras)


def test_nerfstudios_transforms_json_of_a_colmap_model_scores_perfectly_against_that_model(tmp_path: Path) -> None:
    from nerfstudio.process_data.colmap_utils import colmap_to_json

    model = write_pycolmap_model(tmp_path / "colmap" / "sparse" / "0", random_cameras(8, seed=7))
    colmap_to_json(model, tmp_path)
    report = evaluate(tmp_path / "transforms.json", model)
    _assert_perfect(report)
    assert report.frames.matched == 8
    assert report.trajectory.rmse < 1e-12 and report.trajectory.scale == pytest.approx(1.0, abs=1e-12)


def test_our_transforms_json_and_colmap_export_of_one_run_score_perfectly_against_each_other(tmp_path: Path) -> None:
    from vggt_sparse_ns.export.colmap import write_colmap
    from vggt_sparse_ns.export.nerfstudio import transforms_dict, write_transforms

    cameras = random_cameras(5, seed=9)
    intrinsics = np.tile([[480.0, 0, 320], [0, 490, 240], [0, 0, 1]], (5, 1, 1))
    sizes, names = [(640, 480)] * 5, [Path(name).name for name in cameras.names]
    write_transforms(
        tmp_path, transforms_dict(cameras.T_camera_world, intrinsics, sizes, [f"images/{n}" for n in names], None)
    )
    no_points = {"xyz": np.zeros((0, 3)), "rgb": np.zeros((0, 3), np.uint8), "frame": [], "pixel": np.zeros((0, 2))}
    sparse = tmp_path / "colmap" / "sparse" / "0"
    write_colmap(
        sparse, cameras.T_camera_world, intrinsics, sizes=sizes, image_names=names, shared_intrinsic=None, **no_points
    )
    report = evaluate(tmp_path, sparse)
    _assert_perfect(report)
    assert report.frames.matched == 5 and report.trajectory.scale == pytest.approx(1.0, abs=1e-12)
