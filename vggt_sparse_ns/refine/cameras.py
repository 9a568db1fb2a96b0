"""Cameras during refinement: poses, full-resolution intrinsics and OpenCV distortion as arrays, and their
projection and unprojection (undistortion) of pixels."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vggt_sparse_ns.camera_models import distort, project

UNDISTORT_ITERATIONS = 20


@dataclass(frozen=True)
class CameraSet:
    """S cameras: OpenCV world-to-camera, intrinsics in full-resolution pixels, distortion (k1, k2, p1, p2) of
    OpenCV's model in normalised camera coordinates (zeros: none)."""

    T_camera_world: np.ndarray
    """[S, 3, 4] float64."""
    intrinsics: np.ndarray
    """[S, 3, 3] float64."""
    distortion: np.ndarray
    """[S, 4] float64."""

    @property
    def centres(self) -> np.ndarray:
        """[S, 3] camera centres in the world."""
        rotation, translation = self.T_camera_world[:, :, :3], self.T_camera_world[:, :, 3]
        return -np.einsum("sji,sj->si", rotation, translation)

    def turned(self, other: CameraSet, frames: np.ndarray, degrees: float) -> np.ndarray:
        """[F] bool: whether each of ``frames`` is rotated more than ``degrees`` from its camera in ``other``."""
        relative = np.einsum("sij,skj->sik", self.T_camera_world[frames, :, :3], other.T_camera_world[frames, :, :3])
        return (np.trace(relative, axis1=1, axis2=2) - 1) / 2 < np.cos(np.deg2rad(degrees))

    def with_frames(self, frames: np.ndarray, other: CameraSet) -> CameraSet:
        """These cameras with ``frames`` taken from ``other``."""
        arrays = {name: getattr(self, name).copy() for name in ("T_camera_world", "intrinsics", "distortion")}
        for name, array in arrays.items():
            array[frames] = getattr(other, name)[frames]
        return replace(self, **arrays)


def undistort(distorted: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """The inverse of ``distort`` by fixed-point iteration (exact for zero distortion)."""
    undistorted = distorted.copy()
    if not np.any(distortion):
        return undistorted
    for _ in range(UNDISTORT_ITERATIONS):
        undistorted = undistorted - (distort(undistorted, distortion) - distorted)
    return undistorted


def normalised_points(cameras: CameraSet, frames: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """[N, 2] undistorted normalised camera coordinates of full-resolution pixels seen by ``frames``."""
    k = cameras.intrinsics[frames]
    y = (pixels[:, 1] - k[:, 1, 2]) / k[:, 1, 1]
    x = (pixels[:, 0] - k[:, 0, 2] - k[:, 0, 1] * y) / k[:, 0, 0]
    return undistort(np.stack([x, y], axis=1), cameras.distortion[frames])


def project_points(cameras: CameraSet, frames: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution pixels [N, 2] and z-depths [N] of world points [N, 3], each seen by its frame."""
    # Without distortion the per-observation coefficients would be gathered and applied for nothing (a quarter of
    # the time, measured on 2 M observations).
    distortion = cameras.distortion[frames] if np.any(cameras.distortion) else None
    return project(points, cameras.T_camera_world[frames], cameras.intrinsics[frames], distortion)
