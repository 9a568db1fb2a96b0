"""Frames whose predicted camera is too far off to triangulate with get a new pose from the points the other
frames triangulated: absolute pose (P3P in LO-RANSAC, then refinement) with pycolmap, the predicted
intrinsics kept. This is how a frame VGGT got badly wrong rejoins the adjustment instead of being kept. A frame
none of whose tracks were triangulated (two-view tracks need its own camera) is placed by its relative pose to
the placed frame it shares the most tracks with."""

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
    predicted: CameraSet,
    min_inliers: int,
    max_error: float,
) -> tuple[CameraSet, list[int]]:
    """New poses for the ``candidates`` frames: by absolute pose where they see at least ``min_inliers`` of the
    model's points within ``max_error`` pixels of one, else by relative pose (``place_by_relative_pose``).
    ``observations`` is (track, frame, keypoint, pixel) of every track. Returns the cameras and the frames
    registered."""
    cameras, registered = _register_by_absolute_pose(
        cameras, model, observations, candidates, sizes, min_inliers=min_inliers, max_error=max_error
    )
    placed = set(np.unique(model.frame).tolist()) | set(registered)
    cameras, placed_relatively = place_by_relative_pose(
        cameras,
        predicted,
        observations,
        [c for c in candidates if c not in registered],
        placed,
        sizes,
        min_inliers=min_inliers,
        max_error=max_error,
    )
    return cameras, registered + placed_relatively


def place_by_relative_pose(
    cameras: CameraSet,
    predicted: CameraSet,
    observations: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    candidates: Sequence[int],
    placed: set[int],
    sizes: Sequence[tuple[int, int]],
    *,
    min_inliers: int,
    max_error: float,
) -> tuple[CameraSet, list[int]]:
    """Poses for ``candidates`` from the essential matrix (pycolmap's LO-RANSAC, the cameras' intrinsics) of the
    tracks each shares with the ``placed`` frame it shares most with, when ``min_inliers`` of them fit it; the
    baseline's length, which two views do not determine, is the predicted one. Frames placed so become
    references for the rest. Where VGGT's predicted positions are off by more than the baselines (a camera
    turning on the spot: 3-5 % of the room's width against 3 % between neighbours), no track of a frame triangulates
    from its predicted camera and absolute pose has no points to use.

    Returns the cameras and the frames placed, in order."""
    import pycolmap

    if len(candidates) == 0:
        return cameras, []
    track, frame, _, pixel = observations
    shared_counts = _shared_track_counts(track, frame, len(sizes))
    placed = set(placed)
    options = pycolmap.RANSACOptions(max_error=max_error, random_seed=0)
    T_camera_world = cameras.T_camera_world.copy()
    pending, done = np.array(sorted(candidates), dtype=np.int64), []
    while len(pending):
        references = np.array(sorted(placed), dtype=np.int64)
        if len(references) == 0:
            break
        counts = shared_counts[pending][:, references].toarray()
        best = np.unravel_index(np.argmax(counts), counts.shape)
        if counts[best] < min_inliers:
            break
        candidate, reference = int(pending[best[0]]), int(references[best[1]])
        pending = pending[pending != candidate]
        tracks = np.intersect1d(track[frame == candidate], track[frame == reference], assume_unique=True)
        found = pycolmap.estimate_relative_pose(
            _pinhole(cameras, reference, sizes),
            pixel[(frame == reference) & np.isin(track, tracks)],
            _pinhole(cameras, candidate, sizes),
            pixel[(frame == candidate) & np.isin(track, tracks)],
            options,
        )
        if found is None or found["num_inliers"] < min_inliers:
            continue
        relative = found["cam2_from_cam1"].matrix()
        baseline = np.linalg.norm(predicted.centres[candidate] - predicted.centres[reference])
        direction = relative[:, 3] / np.linalg.norm(relative[:, 3])
        rotation = relative[:, :3] @ T_camera_world[reference, :, :3]
        translation = relative[:, :3] @ T_camera_world[reference, :, 3] + baseline * direction
        T_camera_world[candidate] = np.concatenate([rotation, translation[:, None]], axis=1)
        placed.add(candidate)
        done.append(int(candidate))
    return CameraSet(T_camera_world, cameras.intrinsics, cameras.distortion), done


def _shared_track_counts(track: np.ndarray, frame: np.ndarray, frames: int):
    """[S, S] sparse: how many tracks each two frames share (a frame has at most one observation per track)."""
    from scipy.sparse import coo_matrix

    incidence = coo_matrix(
        (np.ones(len(track), dtype=np.int64), (frame, track)), shape=(frames, int(track.max(initial=-1)) + 1)
    ).tocsr()
    return (incidence @ incidence.T).tocsr()


def _pinhole(cameras: CameraSet, frame: int, sizes: Sequence[tuple[int, int]]):
    import pycolmap

    width, height = sizes[frame]
    return pycolmap.Camera(
        model="PINHOLE", width=width, height=height, params=colmap_params("PINHOLE", cameras.intrinsics[frame])
    )


def _register_by_absolute_pose(
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
    ``max_error`` pixels of an absolute pose; returns the cameras and the frames registered."""
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
        found = pycolmap.estimate_and_refine_absolute_pose(
            pixel[mine[usable]], model.xyz[seen[usable]], _pinhole(cameras, candidate, sizes), estimation
        )
        if found is None or found["num_inliers"] < min_inliers:
            continue
        T_camera_world[candidate] = found["cam_from_world"].matrix()
        registered.append(int(candidate))
    return CameraSet(T_camera_world, cameras.intrinsics, cameras.distortion), registered
