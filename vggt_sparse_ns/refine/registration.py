"""Frames whose predicted camera is too far off to triangulate with get a new pose from the points the other
frames triangulated: absolute pose (P3P in LO-RANSAC, then refinement) with pycolmap, the predicted
intrinsics kept. This is how a frame VGGT got badly wrong rejoins the adjustment instead of being kept."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vggt_sparse_ns.camera_models import colmap_params
from vggt_sparse_ns.refine.cameras import CameraSet
from vggt_sparse_ns.refine.triangulation import SparseModel


def point_of_track(model: SparseModel, track: np.ndarray, frame: np.ndarray, keypoint: np.ndarray) -> np.ndarray:
    """[T] the model's point index of each track (-1 where the track was not triangulated), found through the
    observations the model kept (a frame's keypoint belongs to one track)."""
    stride = int(max(keypoint.max(initial=0), model.keypoint.max(initial=0))) + 1
    keys = frame * stride + keypoint
    order = np.argsort(keys)
    found = order[np.searchsorted(keys[order], model.frame * stride + model.keypoint)]
    points = np.full(int(track.max(initial=-1)) + 1, -1, dtype=np.int64)
    points[track[found]] = model.point
    return points


def register_frames(
    cameras: CameraSet,
    model: SparseModel,
    observations: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    candidates: Sequence[int],
    sizes: Sequence[tuple[int, int]],
    *,
    min_inliers: int,
    max_error: float,
) -> tuple[CameraSet, list[int]]:
    """New poses for the ``candidates`` frames that see at least ``min_inliers`` of the model's points within
    ``max_error`` pixels of an absolute pose. ``observations`` is (track, frame, keypoint, pixel) of every track.
    Returns the cameras and the frames registered."""
    import pycolmap

    track, frame, keypoint, pixel = observations
    if len(model.xyz) == 0:
        return cameras, []
    points = point_of_track(model, track, frame, keypoint)
    estimation = pycolmap.AbsolutePoseEstimationOptions()
    estimation.ransac.max_error = max_error
    estimation.ransac.random_seed = 0
    T_camera_world = cameras.T_camera_world.copy()
    registered = []
    by_frame = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[by_frame], np.arange(len(sizes) + 1))
    for candidate in candidates:
        mine = by_frame[bounds[candidate] : bounds[candidate + 1]]
        seen = points[track[mine]]
        usable = seen >= 0
        if usable.sum() < min_inliers:
            continue
        width, height = sizes[candidate]
        camera = pycolmap.Camera(
            model="PINHOLE",
            width=width,
            height=height,
            params=colmap_params("PINHOLE", cameras.intrinsics[candidate]),
        )
        found = pycolmap.estimate_and_refine_absolute_pose(
            pixel[mine[usable]], model.xyz[seen[usable]], camera, estimation
        )
        if found is None or found["num_inliers"] < min_inliers:
            continue
        T_camera_world[candidate] = found["cam_from_world"].matrix()
        registered.append(int(candidate))
    return CameraSet(T_camera_world, cameras.intrinsics, cameras.distortion), registered
