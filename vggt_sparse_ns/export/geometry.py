"""Camera and point conversions from VGGT's frames to nerfstudio's and to full-resolution pixels.

VGGT predicts ``T_camera_world``: world to camera, OpenCV camera axes (x right, y down, z forward),
world = frame 0's camera. nerfstudio's transforms.json holds camera-to-world in OpenGL camera
axes (x right, y up, looking down -z), in a world that ``ns-process-data`` rotates once more so
that "up" is +z; the rotation is recorded as ``applied_transform``. docs/conventions.md has the
whole picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # images.py loads torch; the viewer imports this module for its axis conventions
    from torch import Tensor

    from vggt_sparse_ns.images import ImageTransform

T_NERFSTUDIO_VGGT = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
"""nerfstudio's saved world from VGGT's world: (x, y, z) -> (x, z, -y). It is the world change that
ns-process-data applies to COLMAP output; the top 3x4 rows are written as ``applied_transform``.
VGGT's world is camera 0 in OpenCV axes (y down), so nerfstudio's +z ("up") is camera 0's up."""

OPENGL_FROM_OPENCV_CAMERA = np.diag([1.0, -1.0, -1.0])
"""OpenGL camera axes from OpenCV camera axes (flip y and z); its own inverse."""


def applied_transform() -> list[list[float]]:
    """The 3x4 ``applied_transform`` of transforms.json, as nerfstudio's COLMAP converter writes it."""
    return T_NERFSTUDIO_VGGT[:3].tolist()


def invert_rigid(T_a_b: np.ndarray) -> np.ndarray:
    """[..., 3, 4] rigid transforms inverted in closed form: T_b_a = [R^T | -R^T t]."""
    rotation, translation = T_a_b[..., :3, :3], T_a_b[..., :3, 3:]
    rotation_t = np.swapaxes(rotation, -1, -2)
    return np.concatenate([rotation_t, -rotation_t @ translation], axis=-1)


def nerfstudio_camera_to_world(T_camera_world: np.ndarray) -> np.ndarray:
    """[S, 4, 4] ``transform_matrix`` values (camera-to-world, OpenGL axes, nerfstudio world) from
    [S, 3, 4] OpenCV world-to-camera matrices in VGGT's world."""
    T_world_camera = invert_rigid(np.asarray(T_camera_world, dtype=np.float64))
    T_world_camera[:, :, :3] = T_world_camera[:, :, :3] @ OPENGL_FROM_OPENCV_CAMERA
    homogeneous = np.zeros((len(T_world_camera), 4, 4))
    homogeneous[:, :3] = T_world_camera
    homogeneous[:, 3, 3] = 1.0
    return T_NERFSTUDIO_VGGT @ homogeneous


def to_nerfstudio_world(points: np.ndarray) -> np.ndarray:
    """[..., 3] points in VGGT's world, expressed in nerfstudio's saved world (same dtype)."""
    points = np.asarray(points)
    return (points @ T_NERFSTUDIO_VGGT[:3, :3].T.astype(points.dtype)).astype(points.dtype, copy=False)


def full_resolution_intrinsics(intrinsics: np.ndarray, transforms: Sequence[ImageTransform]) -> np.ndarray:
    """[S, 3, 3] intrinsics in pixels of the original images, from model-pixel intrinsics."""
    if len(transforms) != len(intrinsics):
        raise ValueError(f"{len(intrinsics)} intrinsic matrices but {len(transforms)} image transforms")
    return np.stack([t.intrinsics_to_original(k) for t, k in zip(transforms, intrinsics, strict=True)])


def unproject(pixels: Tensor, depth: Tensor, intrinsics: Tensor, T_camera_world: Tensor) -> Tensor:
    """[N, 3] world points seen at continuous pixels [N, 2] (x, y) with z-depth [N] by cameras [N, 3, 3] and
    [N, 3, 4] (one per point; [3, 3] and [3, 4] broadcast), in the inputs' dtype and device. Element-wise
    arithmetic in a fixed order, no matrix products (whose rounding differs by device): every device gives
    the same points."""
    import torch  # here, not at import: the viewer imports this module for its axis conventions alone

    x_pixel, y_pixel = pixels.unbind(-1)
    y = (y_pixel - intrinsics[..., 1, 2]) / intrinsics[..., 1, 1]
    x = (x_pixel - intrinsics[..., 0, 2] - intrinsics[..., 0, 1] * y) / intrinsics[..., 0, 0]
    camera = (x * depth, y * depth, depth)
    offset = [camera[row] - T_camera_world[..., row, 3] for row in range(3)]
    # world = R^T (camera - t)
    world = [sum(T_camera_world[..., row, axis] * offset[row] for row in range(3)) for axis in range(3)]
    return torch.stack(world, dim=-1)


def project(
    points_world: np.ndarray, intrinsic: np.ndarray, T_camera_world: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates [N, 2] and z-depth [N] of world points [N, 3] in one camera."""
    points_camera = np.asarray(points_world, np.float64) @ np.asarray(T_camera_world[:3, :3], np.float64).T
    points_camera += np.asarray(T_camera_world[:3, 3], np.float64)
    z = points_camera[:, 2]
    homogeneous = points_camera / z[:, None]
    pixels = homogeneous @ np.asarray(intrinsic, np.float64).T
    return pixels[:, :2], z


def model_pixel_centres(rows: Tensor, cols: Tensor) -> Tensor:
    """Continuous coordinates [N, 2] (x, y), float32, of the centres of model pixels given by integer indices."""
    import torch

    return torch.stack((cols.float() + 0.5, rows.float() + 0.5), dim=-1)


INTRINSICS_TOLERANCE_PX = 0.01
"""Frames whose focal lengths and principal points agree within this many pixels share intrinsics."""


def common_intrinsic(intrinsics: np.ndarray, sizes: Sequence[tuple[int, int]]) -> np.ndarray | None:
    """The mean 3x3 intrinsic when all frames have the same image size and intrinsics within
    ``INTRINSICS_TOLERANCE_PX``; None when any frame differs."""
    if len(set(sizes)) != 1:
        return None
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    if np.abs(intrinsics - intrinsics[0]).max() > INTRINSICS_TOLERANCE_PX:
        return None
    return intrinsics.mean(axis=0)
