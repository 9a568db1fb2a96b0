"""Cameras during refinement: poses, full-resolution intrinsics and OpenCV distortion as arrays, their
projection, and the conversion to and from pycolmap's camera models."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vggt_sparse_ns.refine.config import CameraModelName

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

    def with_frames(self, frames: np.ndarray, other: CameraSet) -> CameraSet:
        """These cameras with ``frames`` taken from ``other``."""
        arrays = {name: getattr(self, name).copy() for name in ("T_camera_world", "intrinsics", "distortion")}
        for name, array in arrays.items():
            array[frames] = getattr(other, name)[frames]
        return replace(self, **arrays)


def distort(normalised: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """OpenCV's radial-tangential model on [N, 2] normalised points with per-point coefficients [N, 4]."""
    x, y = normalised[:, 0], normalised[:, 1]
    k1, k2, p1, p2 = distortion.T
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    return np.stack(
        [x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y],
        axis=1,
    )


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
    pose = cameras.T_camera_world[frames]
    camera = np.einsum("nij,nj->ni", pose[:, :, :3], points) + pose[:, :, 3]
    z = camera[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = camera[:, :2] / z[:, None]
    distorted = distort(normalised, cameras.distortion[frames])
    k = cameras.intrinsics[frames]
    pixels = np.stack(
        [
            k[:, 0, 0] * distorted[:, 0] + k[:, 0, 1] * distorted[:, 1] + k[:, 0, 2],
            k[:, 1, 1] * distorted[:, 1] + k[:, 1, 2],
        ],
        axis=1,
    )
    return pixels, z


def colmap_params(model: CameraModelName, intrinsic: np.ndarray, distortion: np.ndarray) -> list[float]:
    """pycolmap/COLMAP parameters of ``model`` from a 3x3 intrinsic and (k1, k2, p1, p2)."""
    fx, fy, cx, cy = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]
    if model == "PINHOLE":
        return [fx, fy, cx, cy]
    if model == "SIMPLE_RADIAL":
        return [(fx + fy) / 2, cx, cy, distortion[0]]
    return [fx, fy, cx, cy, *distortion]


def from_colmap_params(model: CameraModelName, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3x3 intrinsic, (k1, k2, p1, p2)) of a pycolmap/COLMAP camera's parameters."""
    params = np.asarray(params, dtype=np.float64)
    if model == "SIMPLE_RADIAL":
        f, cx, cy, k1 = params
        fx, fy, distortion = f, f, np.array([k1, 0.0, 0.0, 0.0])
    else:
        fx, fy, cx, cy = params[:4]
        distortion = params[4:8] if model == "OPENCV" else np.zeros(4)
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), distortion
