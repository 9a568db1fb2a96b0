"""Cameras during refinement: poses, full-resolution intrinsics and OpenCV distortion as arrays, and their
projection and unprojection (undistortion) of pixels, in numpy or in torch on refinement's device."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from vggt_sparse_ns.camera_models import array_namespace, distort, project

if TYPE_CHECKING:
    import torch

    from vggt_sparse_ns.camera_models import Array

UNDISTORT_ITERATIONS = 20


@dataclass(frozen=True)
class CameraSet:
    """S cameras: OpenCV world-to-camera, intrinsics in full-resolution pixels, distortion (k1, k2, p1, p2) of
    OpenCV's model in normalised camera coordinates (zeros: none). numpy arrays, or float64 tensors
    (``to_tensors``) for the functions below."""

    T_camera_world: Array
    """[S, 3, 4] float64."""
    intrinsics: Array
    """[S, 3, 3] float64."""
    distortion: Array
    """[S, 4] float64."""

    @property
    def centres(self) -> Array:
        """[S, 3] camera centres in the world."""
        rotation, translation = self.T_camera_world[:, :, :3], self.T_camera_world[:, :, 3]
        return -array_namespace(rotation).einsum("sji,sj->si", rotation, translation)

    def turned(self, other: CameraSet, frames: np.ndarray, degrees: float) -> np.ndarray:
        """[F] bool: whether each of ``frames`` is rotated more than ``degrees`` from its camera in ``other``."""
        relative = np.einsum("sij,skj->sik", self.T_camera_world[frames, :, :3], other.T_camera_world[frames, :, :3])
        return (np.trace(relative, axis1=1, axis2=2) - 1) / 2 < np.cos(np.deg2rad(degrees))

    def to_tensors(self, device: torch.device) -> CameraSet:
        """These cameras as float64 tensors on ``device``."""
        import torch

        return CameraSet(
            *(
                torch.as_tensor(getattr(self, name), dtype=torch.float64, device=device)
                for name in ("T_camera_world", "intrinsics", "distortion")
            )
        )

    def with_frames(self, frames: np.ndarray, other: CameraSet) -> CameraSet:
        """These cameras with ``frames`` taken from ``other``."""
        arrays = {name: getattr(self, name).copy() for name in ("T_camera_world", "intrinsics", "distortion")}
        for name, array in arrays.items():
            array[frames] = getattr(other, name)[frames]
        return replace(self, **arrays)


def undistort(distorted: Array, distortion: Array) -> Array:
    """The inverse of ``distort`` by fixed-point iteration (``distorted`` itself for zero distortion)."""
    if not distortion.any():
        return distorted
    undistorted = distorted
    for _ in range(UNDISTORT_ITERATIONS):
        undistorted = undistorted - (distort(undistorted, distortion) - distorted)
    return undistorted


def normalised_points(cameras: CameraSet, frames: Array, pixels: Array) -> Array:
    """[N, 2] undistorted normalised camera coordinates of full-resolution pixels seen by ``frames``."""
    k = cameras.intrinsics[frames]
    y = (pixels[:, 1] - k[:, 1, 2]) / k[:, 1, 1]
    x = (pixels[:, 0] - k[:, 0, 2] - k[:, 0, 1] * y) / k[:, 0, 0]
    return undistort(array_namespace(pixels).stack([x, y], 1), cameras.distortion[frames])


def project_points(cameras: CameraSet, frames: Array, points: Array) -> tuple[Array, Array]:
    """Full-resolution pixels [N, 2] and z-depths [N] of world points [N, 3], each seen by its frame."""
    # Without distortion the per-observation coefficients would be gathered and applied for nothing (a quarter of
    # the time, measured on 2 M observations).
    distortion = cameras.distortion[frames] if cameras.distortion.any() else None
    return project(points, cameras.T_camera_world[frames], cameras.intrinsics[frames], distortion)


def reprojection_errors(cameras: CameraSet, frames: Array, points: Array, pixels: Array) -> Array:
    """[N] distance (full-resolution pixels) from each pixel to its world point's projection in its frame; infinite
    behind the camera or where not finite."""
    xp = array_namespace(points)
    projected, z = project_points(cameras, frames, points)
    errors = ((projected - pixels) ** 2).sum(1) ** 0.5
    return xp.where((z > 0) & xp.isfinite(errors), errors, float("inf"))
