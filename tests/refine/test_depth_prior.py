"""The predicted depth as a prior in the adjustment: read at the keypoints' model pixels, and a compiled cost whose
residual is the point's depth error in the frame, in widths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine.config import RefineConfig, RefineError
from vggt_sparse_ns.refine.depth_prior import DepthPrior, depth_cost, depth_prior, virtual_camera

# Full-resolution 320 x 240 images, halved and padded by 3 rows on top: model pixels 160 x 126.
TRANSFORM = ImageTransform((320, 240), (160, 120), (0, 0), (0, 3), (160, 126))


def _prediction(depth: np.ndarray) -> Reconstruction:
    frames, height, width = depth.shape
    return Reconstruction(
        image_paths=[Path(f"frame_{i}.png") for i in range(frames)],
        transforms=[TRANSFORM] * frames,
        T_camera_world=np.repeat(np.eye(4)[None, :3], frames, 0).astype(np.float32),
        intrinsics=np.repeat(np.eye(3)[None], frames, 0).astype(np.float32),
        depth=depth.astype(np.float32),
        depth_conf=np.ones_like(depth, np.float32),
        colors=np.zeros((frames, height, width, 3), np.uint8),
    )


def _planar_depth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 2.0 + 0.01 * x + 0.02 * y


def test_the_predicted_depth_is_read_bilinearly_at_the_keypoints_model_pixel() -> None:
    # A depth map that is linear in the model pixel's centre (col + 0.5, row + 0.5): bilinear reading is exact.
    cols, rows = np.meshgrid(np.arange(160) + 0.5, np.arange(126) + 0.5)
    prior = DepthPrior(_prediction(np.stack([_planar_depth(cols, rows), 2 * _planar_depth(cols, rows)])), 0.05, 50)
    keypoints = np.array([[100.3, 50.7], [17.9, 200.2], [250.0, 120.0]])  # full-resolution pixels
    frames = np.array([0, 1, 1])
    targets, usable = prior.targets(frames, keypoints)
    model_x, model_y = keypoints[:, 0] / 2, keypoints[:, 1] / 2 + 3
    np.testing.assert_allclose(targets, [1.0, 2.0, 2.0] * _planar_depth(model_x, model_y), rtol=1e-6)
    assert usable.all()


def test_keypoints_beside_a_depth_edge_off_the_map_or_on_missing_depth_get_no_prior() -> None:
    depth = np.full((1, 126, 160), 4.0)
    depth[:, :, 80:] = 6.0  # an edge between model columns 79 and 80
    depth[:, 100:, :] = 0.0  # no depth below row 100
    prior = DepthPrior(_prediction(depth), 0.05, 50)
    keypoints = np.array([[100.0, 60.0], [160.0, 60.0], [-4.0, 60.0], [100.0, 220.0]])
    _, usable = prior.targets(np.zeros(4, np.int64), keypoints)
    np.testing.assert_array_equal(usable, [True, False, False, False])


def test_no_depth_or_a_width_of_zero_gives_no_prior() -> None:
    assert depth_prior(_prediction(np.zeros((2, 126, 160))), 0.05, 50) is None
    assert depth_prior(_prediction(np.ones((2, 126, 160))), 0.0, 50) is None
    assert depth_prior(_prediction(np.ones((2, 126, 160))), 0.05, 50) is not None


def test_the_cost_is_the_depth_error_in_widths_along_the_ray_and_the_bearings_change_across_it() -> None:
    import pyceres
    import pycolmap

    rng = np.random.default_rng(0)
    quaternion = rng.standard_normal(4)
    pose = pycolmap.Rigid3d(pycolmap.Rotation3d(quaternion / np.linalg.norm(quaternion)), [0.3, -0.2, 0.5])
    start = np.array([0.5, 1.0, 4.0])
    start_in_frame = pose * start
    assert start_in_frame[2] > 0
    cost = depth_cost(start_in_frame, target=2.0, width=0.05)

    def residuals(in_frame: np.ndarray) -> np.ndarray:
        problem = pyceres.Problem()
        camera = virtual_camera()
        problem.add_residual_block(cost, None, [pose.inverse() * in_frame, np.array(pose.params), camera])
        return np.array(problem.evaluate_residuals())

    for scale in (0.4, 1.0, 1.7):  # along the start's ray: the depth error alone
        depth = scale * start_in_frame[2]
        np.testing.assert_allclose(residuals(scale * start_in_frame), [(depth - 2.0) / (0.05 * depth), 0.0], atol=1e-9)
    # Across it: the bearing's change in focal-length units (a thousandth of a pixel at a focal length of 1,000).
    bearing = start_in_frame[:2] / start_in_frame[2] + [0.002, -0.001]
    moved = np.append(bearing, 1.0) * start_in_frame[2]
    expected = [0.002 + (start_in_frame[2] - 2.0) / (0.05 * start_in_frame[2]), -0.001]
    np.testing.assert_allclose(residuals(moved), expected, atol=1e-9)


def test_a_depth_points_per_frame_below_one_is_refused_with_a_clear_message() -> None:
    with pytest.raises(RefineError, match="--refine-depth-points-per-frame is out of range: 0"):
        RefineConfig(refine_depth_points_per_frame=0)
