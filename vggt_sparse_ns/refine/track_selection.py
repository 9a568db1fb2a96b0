"""Which tracks bundle adjustment sees, so that its cost grows with the frames and not with the features or the
track lengths: a well-spread subset of good tracks in each frame (the track selection of large-scale SfM, e.g.
Theia's), and long tracks split into shorter ones.

Bundle adjustment's Schur elimination costs each point the square of its track length (every pair of its
observations couples two cameras), so a video's long tracks dominate it: measured on 100 views circling a
plane, 1,345 points with 48 observations each took 0.14 s per solver iteration on 2 cores. All tracks are
re-triangulated with the adjusted cameras afterwards, so the subset only has to pin the cameras down.
"""

from __future__ import annotations

import numpy as np

from vggt_sparse_ns.refine.triangulation import SparseModel

CELL_PIXELS = 100
"""Side of the image grid cells over which each frame's chosen tracks are spread (full-resolution pixels)."""
LONG_TRACK = 10
"""Tracks with at least this many observations count as equally long when ranked (then the lower mean
reprojection error wins), so that a few very long tracks do not crowd out well-measured ones."""
MAX_TRACK_LENGTH = 20
"""A chosen track with more observations is adjusted as several points of at most this many observations."""


def adjustment_tracks(model: SparseModel, errors: np.ndarray, per_frame: int) -> SparseModel:
    """The bundle adjustment problem of ``model``: ``spread_subset`` with ``per_frame`` points per frame, its
    long tracks split (``split_long_tracks``). Its points are starting values only: the caller re-triangulates
    every track with the adjusted cameras."""
    return split_long_tracks(spread_subset(model, errors, per_frame))


def spread_subset(model: SparseModel, errors: np.ndarray, per_frame: int, seed: int = 0) -> SparseModel:
    """The points chosen by the frames (``frame_choices``), with all their observations.

    Args:
        model: the triangulated points and their observations.
        errors: [M] reprojection error of each observation in pixels (``model.errors(cameras)``).
        per_frame: points each frame chooses (all of them when it has fewer).
        seed: the seed of the random tie-break.

    Returns:
        The model restricted to the chosen points (``model.select``).

    Example:
        >>> subset = spread_subset(model, model.errors(cameras), per_frame=500)
    """
    chosen = np.zeros(len(model.xyz), dtype=bool)
    chosen[model.point[frame_choices(model, errors, per_frame, seed)]] = True
    return model.select(chosen[model.point])


def frame_choices(model: SparseModel, errors: np.ndarray, per_frame: int, seed: int = 0) -> np.ndarray:
    """[M] whether each observation's frame chose its point: each frame takes ``per_frame`` of its points, first
    the best one of every ``CELL_PIXELS`` grid cell it has points in, then the second best of each cell, and so
    on. Best: a longer track (lengths from ``LONG_TRACK`` on equal), then a lower mean reprojection error
    (``errors``, per observation), then at random (``seed``)."""
    count = len(model.xyz)
    views = np.bincount(model.point, minlength=count)
    mean_error = np.bincount(model.point, errors, minlength=count) / np.maximum(views, 1)
    tiebreak = np.random.default_rng(seed).random(count)
    # Each point's place in the ranking, best first: its rank keys sorted once per point, not per observation.
    point_rank = np.empty(count, dtype=np.int64)
    point_rank[np.lexsort((tiebreak, mean_error, -np.minimum(views, LONG_TRACK)))] = np.arange(count)
    cell = np.floor(model.pixel / CELL_PIXELS).astype(np.int64)
    cell_id = cell[:, 0] * (int(cell[:, 1].max(initial=0)) + 1) + cell[:, 1]
    by_cell = _sorted_by(model.frame, cell_id - cell_id.min(initial=0), point_rank[model.point])
    rank_in_cell = _rank_in_groups(by_cell, model.frame * (int(cell_id.max(initial=0)) + 1) + cell_id)
    by_frame = _sorted_by(model.frame, rank_in_cell, point_rank[model.point])
    return _rank_in_groups(by_frame, model.frame) < per_frame


def _sorted_by(*keys: np.ndarray) -> np.ndarray:
    """The stable order that sorts by the first of these non-negative integer keys, then the next, ...: one sort of
    a combined int64 key, made unique by the position where it fits, so that numpy's introsort gives the stable
    order (3x faster than its stable sort; a several-key ``np.lexsort`` of 2 M observations took 4-5 times as long
    as the stable sort), or ``np.lexsort`` where even the combination would not fit."""
    count = len(keys[0])
    combined = np.zeros(count, dtype=np.int64)
    span = 1
    for key in keys:
        size = int(key.max(initial=0)) + 1
        span *= size
        if span >= 1 << 62:
            return np.lexsort(keys[::-1])
        combined = combined * size + key
    if span * max(count, 1) < 1 << 62:
        return np.argsort(combined * count + np.arange(count))
    return np.argsort(combined, kind="stable")


def _rank_in_groups(order: np.ndarray, group: np.ndarray) -> np.ndarray:
    """[M] position of each element within its group, in ``order`` (which sorts the elements by group first)."""
    sorted_group = group[order]
    starts = np.searchsorted(sorted_group, sorted_group, side="left")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts
    return rank


def split_long_tracks(model: SparseModel, max_length: int = MAX_TRACK_LENGTH) -> SparseModel:
    """Each point with more than ``max_length`` observations as ceil(length / max_length) points at the same
    position, each taking a run of its observations in frame order (runs differ by at most one in length):
    no observation is lost, the adjustment costs at most ``max_length`` times the observations per iteration,
    and each part couples only the cameras of its run (the reduced camera system stays sparse: a part spanning
    every frame would couple them all). Consecutive parts share no observation; the frames they have in common
    through the other points keep them one rigid whole.

    Returns a model sorted by point, then frame, whose point ``i`` of the input became points
    ``first[i] .. first[i] + parts[i] - 1``.
    """
    if max_length < 3:
        raise ValueError(f"max_length must be at least 3 (every part keeps two observations), not {max_length}")
    count = len(model.xyz)
    views = np.bincount(model.point, minlength=count)
    parts = np.maximum(-(-views // max_length), 1)
    first = np.cumsum(parts) - parts
    order = _sorted_by(model.point, model.frame)
    position = _rank_in_groups(order, model.point)
    new_point = first[model.point] + position * parts[model.point] // views[model.point]
    resorted = _sorted_by(new_point, model.frame)
    return SparseModel(
        np.repeat(model.xyz, parts, axis=0),
        new_point[resorted],
        model.frame[resorted],
        model.keypoint[resorted],
        model.pixel[resorted],
    )
