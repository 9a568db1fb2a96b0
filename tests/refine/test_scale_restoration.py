"""The refined world gets VGGT's scale back: from the predicted depth where the frames' depth maps agree on one
factor, else from the predicted camera centres. The scene: seven cameras side by side facing a wall 4 units away,
refined in a world half the prediction's size (so the right scale is 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine.cameras import CameraSet
from vggt_sparse_ns.refine.consistency import back_to_prediction
from vggt_sparse_ns.refine.triangulation import SparseModel

WIDTH, HEIGHT, FOCAL, WALL = 64, 48, 60.0, 4.0
INTRINSIC = np.array([[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1.0]])
OBSERVATIONS = [200, 200, 200, 20, 20, 20, 20]
"""Per frame: three frames with many observations, four with few."""


def _cameras(spacing: float) -> CameraSet:
    frames = len(OBSERVATIONS)
    T_camera_world = np.repeat(np.eye(3, 4)[None], frames, 0)
    T_camera_world[:, 0, 3] = -spacing * np.arange(frames)  # centres at x = spacing * frame
    return CameraSet(T_camera_world, np.repeat(INTRINSIC[None], frames, 0), np.zeros((frames, 4)))


def _scale(depth_factors: list[float]) -> tuple[float, str]:
    """back_to_prediction's scale when each frame's predicted depth is the truth times its factor."""
    frames = len(OBSERVATIONS)
    predicted, refined = _cameras(0.5), _cameras(0.25)
    rng = np.random.default_rng(0)
    frame = np.repeat(np.arange(frames), OBSERVATIONS)
    pixel = np.stack([rng.uniform(0, WIDTH, len(frame)), rng.uniform(0, HEIGHT, len(frame))], 1)
    depth = WALL / 2  # in the refined world
    xyz = np.stack(
        [(pixel[:, 0] - WIDTH / 2) / FOCAL * depth + 0.25 * frame, (pixel[:, 1] - HEIGHT / 2) / FOCAL * depth],
        1,
    )
    xyz = np.concatenate([xyz, np.full((len(frame), 1), depth)], 1)
    index = np.arange(len(frame))
    model = SparseModel(xyz, index, frame, index, pixel)
    size = (WIDTH, HEIGHT)
    reconstruction = Reconstruction(
        image_paths=[Path(f"frame_{i}.png") for i in range(frames)],
        transforms=[ImageTransform(size, size, (0, 0), (0, 0), size)] * frames,
        T_camera_world=predicted.T_camera_world.astype(np.float32),
        intrinsics=predicted.intrinsics.astype(np.float32),
        depth=(WALL * np.array(depth_factors)[:, None, None] * np.ones((frames, HEIGHT, WIDTH))).astype(np.float32),
        depth_conf=np.ones((frames, HEIGHT, WIDTH), np.float32),
        colors=np.zeros((frames, HEIGHT, WIDTH, 3), np.uint8),
    )
    similarity = back_to_prediction(reconstruction, predicted, refined, model, np.arange(frames), anchor=0)
    return similarity.scale, similarity.scale_source


def test_depth_maps_that_agree_on_one_factor_set_the_scale() -> None:
    scale, source = _scale([1.1] * len(OBSERVATIONS))
    assert source == "depth"
    assert scale == pytest.approx(2 * 1.1, rel=1e-5)


def test_depth_maps_each_off_by_its_own_factor_leave_the_scale_to_the_camera_centres() -> None:
    # The three frames with most observations nearly agree (factors 1-1.09), so all observations pooled deviate
    # little from one factor; but four of the seven frames are 26-40 % off in either direction: the depth maps do
    # not share one scale, and pooled they gave 2.1 instead of 2.
    scale, source = _scale([1.0, 1.05, 1.09, 0.67, 0.74, 1.49, 1.65])
    assert source == "camera centres"
    assert scale == pytest.approx(2.0, rel=1e-6)
