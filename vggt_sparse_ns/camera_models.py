"""COLMAP's camera models that refinement and export share: their ids, their parameters from a 3x3 intrinsic
and OpenCV distortion (k1, k2, p1, p2), and that distortion applied to normalised camera coordinates. The
projections take numpy arrays or torch tensors (refinement projects millions of observations on its device)."""

from __future__ import annotations

from contextlib import nullcontext
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    Array = np.ndarray | torch.Tensor

CAMERA_MODEL_IDS = {"PINHOLE": 1, "SIMPLE_RADIAL": 2, "OPENCV": 4}
"""COLMAP's model ids (colmap/sensor/models.h)."""


def colmap_params(model: str, intrinsic: np.ndarray, distortion: np.ndarray | None = None) -> list[float]:
    """Parameters of COLMAP ``model`` from a 3x3 intrinsic and (k1, k2, p1, p2) (None: zeros)."""
    distortion = np.zeros(4) if distortion is None else np.asarray(distortion, dtype=np.float64)
    fx, fy, cx, cy = (float(v) for v in (intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]))
    if model == "PINHOLE":
        return [fx, fy, cx, cy]
    if model == "SIMPLE_RADIAL":
        return [(fx + fy) / 2, cx, cy, float(distortion[0])]
    if model == "OPENCV":
        return [fx, fy, cx, cy, *(float(v) for v in distortion)]
    raise ValueError(f"unknown camera model {model!r}: expected one of {sorted(CAMERA_MODEL_IDS)}")


def from_colmap_params(model: str, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3x3 intrinsic, (k1, k2, p1, p2)) from the parameters of COLMAP ``model``."""
    params = np.asarray(params, dtype=np.float64)
    if model == "SIMPLE_RADIAL":
        f, cx, cy, k1 = params
        fx, fy, distortion = f, f, np.array([k1, 0.0, 0.0, 0.0])
    elif model in ("PINHOLE", "OPENCV"):
        fx, fy, cx, cy = params[:4]
        distortion = params[4:8].copy() if model == "OPENCV" else np.zeros(4)
    else:
        raise ValueError(f"unknown camera model {model!r}: expected one of {sorted(CAMERA_MODEL_IDS)}")
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), distortion


def array_namespace(array: Array) -> ModuleType:
    """numpy for a numpy array, torch for a tensor: the module whose functions (``stack``, ``einsum``, ``where``,
    ...) the functions here call on it."""
    if isinstance(array, np.ndarray):
        return np
    import torch

    return torch


def distort(normalised: Array, distortion: Array) -> Array:
    """OpenCV's radial-tangential model on [N, 2] normalised points, coefficients [N, 4] or [4]."""
    xp = array_namespace(normalised)
    x, y = normalised[:, 0], normalised[:, 1]
    k1, k2, p1, p2 = xp.broadcast_to(distortion, (len(normalised), 4)).T
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    return xp.stack(
        [x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y], 1
    )


def to_camera(points: Array, T_camera_world: Array) -> Array:
    """[N, 3] world points [N, 3] in the coordinates of their own camera, world-to-camera [N, 3, 4]."""
    return array_namespace(points).einsum("nij,nj->ni", T_camera_world[:, :, :3], points) + T_camera_world[:, :, 3]


def project(points: Array, T_camera_world: Array, intrinsics: Array, distortion: Array | None) -> tuple[Array, Array]:
    """Continuous pixels [N, 2] and z-depths [N] of world points [N, 3], each through its own camera:
    world-to-camera [N, 3, 4], intrinsics [N, 3, 3] and distortion [N, 4] (None: none)."""
    xp = array_namespace(points)
    camera = to_camera(points, T_camera_world)
    z = camera[:, 2]
    with np.errstate(divide="ignore", invalid="ignore") if xp is np else nullcontext():
        normalised = camera[:, :2] / z[:, None]
        distorted = normalised if distortion is None else distort(normalised, distortion)
    pixels = xp.einsum("nij,nj->ni", intrinsics[:, :2, :2], distorted) + intrinsics[:, :2, 2]
    return pixels, z
