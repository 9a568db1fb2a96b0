"""Frames placed without triangulated points: by their relative pose to a placed frame they share tracks with."""

from __future__ import annotations

import numpy as np
import pytest
from textured_scene import look_at, random_rotation

from vggt_sparse_ns.refine.cameras import CameraSet, project_points
from vggt_sparse_ns.refine.registration import place_by_relative_pose

SIZE = (320, 240)
K = np.array([[260.0, 0.0, 160.0], [0.0, 260.0, 120.0], [0.0, 0.0, 1.0]])


def _two_views_of_points(rng: np.random.Generator) -> tuple[CameraSet, tuple]:
    """Frame 0 and frame 1 (0.3 apart, turned 20 degrees) seeing 200 points 3-5 in front; every point a track."""
    poses = np.stack(
        [look_at(np.zeros(3), np.array([0.0, 0.0, 1.0])), look_at(np.array([0.3, 0.0, 0.0]), np.array([1.5, 0.0, 4.0]))]
    )
    cameras = CameraSet(poses, np.repeat(K[None], 2, 0), np.zeros((2, 4)))
    points = np.column_stack([rng.uniform(-1.5, 2.5, 200), rng.uniform(-1.0, 1.0, 200), rng.uniform(3.0, 5.0, 200)])
    frame = np.tile([0, 1], 200)
    track = np.repeat(np.arange(200), 2)
    pixel, _ = project_points(cameras, frame, points[track])
    return cameras, (track, frame, np.arange(400) // 2, pixel)


def test_a_frame_is_placed_by_the_rotation_and_direction_its_tracks_give_and_the_predicted_baseline_length() -> None:
    truth, observations = _two_views_of_points(np.random.default_rng(0))
    predicted_pose = truth.T_camera_world.copy()
    predicted_pose[1, :, :3] = random_rotation(np.random.default_rng(1), 3.0) @ predicted_pose[1, :, :3]
    centre = truth.centres[1] + np.array([0.0, 0.2, -0.4])  # off by more than the baseline's 0.3
    predicted_pose[1, :, 3] = -predicted_pose[1, :, :3] @ centre
    predicted = CameraSet(predicted_pose, truth.intrinsics, truth.distortion)

    placed, done = place_by_relative_pose(
        predicted, predicted, observations, [1], {0}, [SIZE, SIZE], min_inliers=20, max_error=1.0
    )

    assert done == [1]
    np.testing.assert_allclose(placed.T_camera_world[1, :, :3], truth.T_camera_world[1, :, :3], atol=1e-4)
    baseline = placed.centres[1] - placed.centres[0]
    true_direction = truth.centres[1] / np.linalg.norm(truth.centres[1])
    np.testing.assert_allclose(baseline / np.linalg.norm(baseline), true_direction, atol=1e-4)
    predicted_baseline = np.linalg.norm(predicted.centres[1] - predicted.centres[0])  # 0.54, not the true 0.3
    assert np.linalg.norm(baseline) == pytest.approx(predicted_baseline, rel=1e-9)


def test_a_frame_sharing_too_few_tracks_with_every_placed_frame_is_not_placed() -> None:
    truth, (track, frame, keypoint, pixel) = _two_views_of_points(np.random.default_rng(0))
    few = track < 10
    placed, done = place_by_relative_pose(
        truth,
        truth,
        (track[few], frame[few], keypoint[few], pixel[few]),
        [1],
        {0},
        [SIZE, SIZE],
        min_inliers=20,
        max_error=1.0,
    )
    assert done == []
    np.testing.assert_array_equal(placed.T_camera_world, truth.T_camera_world)
