"""Relative pose errors, accuracy, pose AUC and focal error against values worked out by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from camera_sets import camera_set, random_cameras, rotation_about

from vggt_sparse_ns.evaluate.metrics import accuracy, pose_auc, relative_focal_errors, relative_pose_errors


def _four_cameras_on_the_x_axis(perturbation: np.ndarray | None = None):
    """Identity orientations, centres (i, 0, 0); camera 1 optionally turned in place by ``perturbation``."""
    rotations = np.tile(np.eye(3), (4, 1, 1))
    centres = np.c_[np.arange(4.0), np.zeros(4), np.zeros(4)]
    if perturbation is not None:
        rotations[1] = perturbation @ rotations[1]
    return camera_set(rotations, centres)


def test_identical_poses_have_zero_error_on_every_pair() -> None:
    cameras = random_cameras(9)
    rotation, translation = relative_pose_errors(cameras.T_camera_world, cameras.T_camera_world)
    assert len(rotation) == len(translation) == 9 * 8 // 2
    assert np.abs(rotation).max() < 1e-6 and np.abs(translation).max() < 1e-6


def test_one_camera_turned_about_an_axis_across_the_baselines_errs_by_that_angle_on_its_pairs() -> None:
    reference = _four_cameras_on_the_x_axis()
    estimate = _four_cameras_on_the_x_axis(rotation_about([0, 0, 1], 2.0))
    rotation, translation = relative_pose_errors(estimate.T_camera_world, reference.T_camera_world)
    # pairs in order (0,1) (0,2) (0,3) (1,2) (1,3) (2,3); only pairs with camera 1 turn by 2 degrees, and only
    # where camera 1 is the first of the pair is the baseline (along x) seen from the turned camera
    np.testing.assert_allclose(rotation, [2, 0, 0, 2, 2, 0], atol=1e-9)
    np.testing.assert_allclose(translation, [0, 0, 0, 2, 2, 0], atol=1e-9)
    assert accuracy(rotation, (1.0, 3.0)) == {1.0: 0.5, 3.0: 1.0}
    assert accuracy(translation, (1.0, 3.0)) == {1.0: pytest.approx(4 / 6), 3.0: 1.0}
    # max errors 2, 0, 0, 2, 2, 0: AUC@5 = (3 * (1 - 2/5) + 3) / 6, AUC@15 = (3 * (1 - 2/15) + 3) / 6
    auc = pose_auc(rotation, translation, (5.0, 15.0))
    assert auc == {5.0: pytest.approx(0.8), 15.0: pytest.approx(14 / 15)}


def test_a_turn_about_the_baseline_itself_leaves_the_translation_direction_right() -> None:
    reference = _four_cameras_on_the_x_axis()
    estimate = _four_cameras_on_the_x_axis(rotation_about([1, 0, 0], 7.0))
    rotation, translation = relative_pose_errors(estimate.T_camera_world, reference.T_camera_world)
    np.testing.assert_allclose(rotation, [7, 0, 0, 7, 7, 0], atol=1e-9)
    np.testing.assert_allclose(translation, 0, atol=1e-9)


def test_a_general_turn_moves_the_baseline_by_the_angle_of_rodrigues_formula() -> None:
    axis, angle = np.array([1.0, 2.0, 2.0]) / 3, 10.0
    estimate = _four_cameras_on_the_x_axis(rotation_about(axis, angle))
    _, translation = relative_pose_errors(estimate.T_camera_world, _four_cameras_on_the_x_axis().T_camera_world)
    # angle between v and R v for unit v: cos = cos(a) + (1 - cos(a)) (axis . v)^2, here v = x, axis . v = 1/3
    expected = np.degrees(np.arccos(np.cos(np.radians(angle)) + (1 - np.cos(np.radians(angle))) / 9))
    np.testing.assert_allclose(translation[[3, 4]], expected, atol=1e-9)


def test_pair_errors_equal_a_plain_loop_over_all_pairs_in_row_major_order() -> None:
    reference, estimate = random_cameras(11, seed=1), random_cameras(11, seed=2)
    rotation, translation = relative_pose_errors(estimate.T_camera_world, reference.T_camera_world)
    expected_rotation, expected_translation = [], []
    for i, j in itertools.combinations(range(11), 2):
        (ri, ti), (rj, tj) = [(p[:, :3], p[:, 3]) for p in estimate.T_camera_world[[i, j]]]
        (qi, ui), (qj, uj) = [(p[:, :3], p[:, 3]) for p in reference.T_camera_world[[i, j]]]
        relative_estimate, relative_reference = ri @ rj.T, qi @ qj.T
        cosine = (np.trace(relative_estimate.T @ relative_reference) - 1) / 2
        expected_rotation.append(np.degrees(np.arccos(np.clip(cosine, -1, 1))))
        a, b = ti - relative_estimate @ tj, ui - relative_reference @ uj
        cosine = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        expected_translation.append(np.degrees(np.arccos(np.clip(cosine, -1, 1))))
    np.testing.assert_allclose(rotation, expected_rotation, atol=1e-6)
    np.testing.assert_allclose(translation, expected_translation, atol=1e-6)


def test_pairs_whose_reference_cameras_share_a_centre_have_no_translation_error() -> None:
    rotations = np.tile(np.eye(3), (3, 1, 1))
    reference = camera_set(rotations, np.array([[0.0, 0, 0], [0, 0, 0], [1, 0, 0]]))
    estimate = camera_set(rotations, np.array([[0.0, 0, 0], [0.1, 0, 0], [1, 0, 0]]))
    _, translation = relative_pose_errors(estimate.T_camera_world, reference.T_camera_world)
    assert np.isnan(translation[0]) and np.isfinite(translation[1:]).all()


def test_pairs_whose_estimated_cameras_share_a_centre_count_as_wrong() -> None:
    rotations = np.tile(np.eye(3), (3, 1, 1))
    reference = camera_set(rotations, np.array([[0.0, 0, 0], [0.5, 0, 0], [1, 0, 0]]))
    estimate = camera_set(rotations, np.array([[0.0, 0, 0], [0, 0, 0], [1, 0, 0]]))
    _, translation = relative_pose_errors(estimate.T_camera_world, reference.T_camera_world)
    assert translation[0] == 180.0


def test_pose_auc_of_a_small_example_worked_by_hand() -> None:
    rotation = np.array([0.0, 1.0, 4.0, 10.0, 3.0])
    translation = np.array([2.0, 0.5, 1.0, 20.0, np.nan])  # the last pair has no baseline: rotation alone
    # pair errors max(r, t): 2, 1, 4, 20, 3
    auc = pose_auc(rotation, translation, (5.0, 10.0))
    assert auc[5.0] == pytest.approx((0.6 + 0.8 + 0.2 + 0.0 + 0.4) / 5)
    assert auc[10.0] == pytest.approx((0.8 + 0.9 + 0.6 + 0.0 + 0.7) / 5)


def test_pose_auc_is_the_area_under_the_accuracy_curve() -> None:
    rng = np.random.default_rng(3)
    rotation, translation = rng.exponential(6.0, 200), rng.exponential(6.0, 200)
    pair_errors = np.maximum(rotation, translation)
    grid = np.linspace(0, 30, 300_001)
    curve = (pair_errors[None, :] <= grid[:, None]).mean(axis=1)
    area = ((curve[1:] + curve[:-1]) / 2 * np.diff(grid)).sum() / 30
    assert pose_auc(rotation, translation, (30.0,))[30.0] == pytest.approx(area, abs=1e-4)


def test_focal_error_is_relative_and_compares_images_at_the_reference_size() -> None:
    estimate_focal = np.array([[550.0, 550.0], [250.0, 250.0]])
    estimate_sizes = np.array([[640, 480], [320, 240]])  # frame 1 saved at half size: focal halves with it
    reference_focal = np.array([[500.0, 500.0], [500.0, 500.0]])
    reference_sizes = np.array([[640, 480], [640, 480]])
    errors = relative_focal_errors(estimate_focal, estimate_sizes, reference_focal, reference_sizes)
    np.testing.assert_allclose(errors, [0.1, 0.0])
