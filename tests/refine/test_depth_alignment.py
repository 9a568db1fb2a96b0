"""Depth maps follow the triangulated points: a scale per frame, and a shift where the scale alone cannot explain
them. The scene: one camera looking at a tilted plane (depth 2-6 across the image), points at pixel centres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine.cameras import CameraSet
from vggt_sparse_ns.refine.consistency import align_depth
from vggt_sparse_ns.refine.triangulation import SparseModel

WIDTH, HEIGHT, FOCAL = 64, 48, 60.0
INTRINSIC = np.array([[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1.0]])


def _true_depth() -> np.ndarray:
    cols = np.arange(WIDTH) + 0.5
    return np.tile(2.0 + 4.0 * cols / WIDTH, (HEIGHT, 1))


def _observed_points(count: int = 200, true_depth: np.ndarray | None = None) -> SparseModel:
    """Points on the plane (``true_depth``, default ``_true_depth()``) at random pixel centres, each observed once
    by frame 0."""
    rng = np.random.default_rng(0)
    cols, rows = rng.integers(0, WIDTH, count), rng.integers(0, HEIGHT, count)
    pixel = np.stack([cols + 0.5, rows + 0.5], 1).astype(np.float64)
    z = (_true_depth() if true_depth is None else true_depth)[rows, cols]
    xyz = np.stack([(pixel[:, 0] - WIDTH / 2) / FOCAL * z, (pixel[:, 1] - HEIGHT / 2) / FOCAL * z, z], 1)
    index = np.arange(count)
    return SparseModel(xyz, index, np.zeros(count, np.int64), index, pixel)


def _prediction(depth: np.ndarray) -> tuple[Reconstruction, CameraSet]:
    size = (WIDTH, HEIGHT)
    reconstruction = Reconstruction(
        image_paths=[Path("frame.png")],
        transforms=[ImageTransform(size, size, (0, 0), (0, 0), size)],
        T_camera_world=np.eye(3, 4, dtype=np.float32)[None],
        intrinsics=INTRINSIC[None].astype(np.float32),
        depth=depth[None].astype(np.float32),
        depth_conf=np.ones((1, HEIGHT, WIDTH), np.float32),
        colors=np.zeros((1, HEIGHT, WIDTH, 3), np.uint8),
    )
    cameras = CameraSet(np.eye(3, 4)[None], INTRINSIC[None], np.zeros((1, 4)))
    return reconstruction, cameras


def test_depth_off_by_a_scale_is_rescaled_without_a_shift() -> None:
    reconstruction, cameras = _prediction(_true_depth() / 1.3)
    depth, _, scales, shifts = align_depth(reconstruction, cameras, cameras, _observed_points())
    assert shifts[0] == 0.0
    assert scales[0] == pytest.approx(1.3, rel=1e-5)
    np.testing.assert_allclose(depth[0], _true_depth(), rtol=1e-5)


def test_depth_off_by_a_scale_and_a_shift_gets_both() -> None:
    reconstruction, cameras = _prediction((_true_depth() - 0.8) / 0.7)
    depth, _, scales, shifts = align_depth(reconstruction, cameras, cameras, _observed_points())
    assert scales[0] == pytest.approx(0.7, rel=1e-4)
    assert shifts[0] == pytest.approx(0.8, rel=1e-4)
    np.testing.assert_allclose(depth[0], _true_depth(), rtol=1e-4)


def test_noisy_depth_off_by_a_scale_gets_no_shift() -> None:
    # A shift fitted to noise explains it little better: the scale alone is kept.
    noise = 1 + 0.02 * np.random.default_rng(1).standard_normal((HEIGHT, WIDTH))
    reconstruction, cameras = _prediction(_true_depth() * noise / 1.3)
    _, _, scales, shifts = align_depth(reconstruction, cameras, cameras, _observed_points())
    assert shifts[0] == 0.0
    assert scales[0] == pytest.approx(1.3, rel=0.01)


@pytest.mark.filterwarnings("error")
def test_a_plane_seen_face_on_is_rescaled_without_a_warning() -> None:
    # Depth that varies by 0.01 % across the image: a line fitted to it is ill-determined, and fitting one must
    # neither warn (it did once per frame, flooding a run's output) nor replace the scale.
    cols = np.arange(WIDTH) + 0.5
    true = np.tile(5.0 + 0.0005 * cols / WIDTH, (HEIGHT, 1))
    reconstruction, cameras = _prediction(true / 1.3)
    points = _observed_points(true_depth=true)
    noisy = points.xyz * (1 + 0.001 * np.random.default_rng(2).standard_normal(len(points.xyz)))[:, None]
    points = SparseModel(noisy, points.point, points.frame, points.keypoint, points.pixel)
    depth, _, scales, shifts = align_depth(reconstruction, cameras, cameras, points)
    assert shifts[0] == 0.0
    assert scales[0] == pytest.approx(1.3, rel=2e-3)
    np.testing.assert_allclose(depth[0], true, rtol=2e-3)


def test_a_shift_that_would_put_predicted_depth_behind_the_camera_is_not_used() -> None:
    # The points span depths 3-6 only; the shift they call for (-2.5) would make the map's nearest depth negative.
    true = _true_depth()
    predicted = (true + 2.5) / 1.0
    predicted[:, :5] = 0.5  # the left edge predicted very near (no points observed there)
    reconstruction, cameras = _prediction(predicted)
    points = _observed_points()
    far = points.pixel[:, 0] >= 5
    points = SparseModel(
        points.xyz[far], np.arange(far.sum()), points.frame[far], points.keypoint[far], points.pixel[far]
    )
    depth, _, _, shifts = align_depth(reconstruction, cameras, cameras, points)
    assert shifts[0] == 0.0
    assert (depth[0] > 0).all()


def test_point_maps_move_along_their_rays_to_the_aligned_depth() -> None:
    reconstruction, cameras = _prediction((_true_depth() - 0.8) / 0.7)
    cols, rows = np.meshgrid(np.arange(WIDTH) + 0.5, np.arange(HEIGHT) + 0.5)
    z = reconstruction.depth[0].astype(np.float64)
    rays = np.stack([(cols - WIDTH / 2) / FOCAL, (rows - HEIGHT / 2) / FOCAL, np.ones_like(cols)], -1)
    reconstruction = Reconstruction(
        **{**reconstruction.__dict__, "world_points": (rays * z[..., None])[None].astype(np.float32)}
    )
    _, world_points, _, _ = align_depth(reconstruction, cameras, cameras, _observed_points())
    np.testing.assert_allclose(world_points[0], rays * _true_depth()[..., None], rtol=1e-4)
