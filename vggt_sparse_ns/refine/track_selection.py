"""Which tracks bundle adjustment sees, so that its cost grows with the frames and not with the features or the
track lengths: a well-spread subset of good tracks in each frame (the track selection of large-scale SfM, e.g.
Theia's), and long tracks split into shorter ones.

Bundle adjustment's Schur elimination costs each point the square of its track length (every pair of its
observations couples two cameras), so a video's long tracks dominate it: measured on 100 views circling a
plane, 1,345 points with 48 observations each took 0.14 s per solver iteration on 2 cores. All tracks are
re-triangulated with the adjusted cameras afterwards, so the subset only has to pin the cameras down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vggt_sparse_ns.refine.triangulation import SparseModel

if TYPE_CHECKING:
    import torch

CELL_PIXELS = 100
"""Side of the image grid cells over which each frame's chosen tracks are spread (full-resolution pixels)."""
LONG_TRACK = 10
"""Tracks with at least this many observations count as equally long when ranked (then the lower mean
reprojection error wins), so that a few very long tracks do not crowd out well-measured ones."""
MAX_TRACK_LENGTH = 20
"""A chosen track with more observations is adjusted as several points of at most this many observations."""


def adjustment_tracks(
    model: SparseModel, errors: np.ndarray, per_frame: int, device: torch.device | None = None
) -> SparseModel:
    """The bundle adjustment problem of ``model``: ``spread_subset`` with ``per_frame`` points per frame, its
    long tracks split (``split_long_tracks``), the observations sorted on ``device`` (the CPU when None). Its points
    are starting values only: the caller re-triangulates every track with the adjusted cameras."""
    return split_long_tracks(spread_subset(model, errors, per_frame, device=device), device=device)


def spread_subset(
    model: SparseModel, errors: np.ndarray, per_frame: int, seed: int = 0, device: torch.device | None = None
) -> SparseModel:
    """The points chosen by the frames (``frame_choices``), with all their observations.

    Args:
        model: the triangulated points and their observations.
        errors: [M] reprojection error of each observation in pixels (``model.errors(cameras)``).
        per_frame: points each frame chooses (all of them when it has fewer).
        seed: the seed of the random tie-break.
        device: where the observations are sorted (the CPU when None).

    Returns:
        The model restricted to the chosen points (``model.select``).

    Example:
        >>> subset = spread_subset(model, model.errors(cameras), per_frame=500)
    """
    chosen = np.zeros(len(model.xyz), dtype=bool)
    chosen[model.point[frame_choices(model, errors, per_frame, seed, device)]] = True
    return model.select(chosen[model.point])


def frame_choices(
    model: SparseModel, errors: np.ndarray, per_frame: int, seed: int = 0, device: torch.device | None = None
) -> np.ndarray:
    """[M] whether each observation's frame chose its point: each frame takes ``per_frame`` of its points, first
    the best one of every ``CELL_PIXELS`` grid cell it has points in, then the second best of each cell, and so
    on. Best: a longer track (lengths from ``LONG_TRACK`` on equal), then a lower mean reprojection error
    (``errors``, per observation), then at random (``seed``). The points are ranked with numpy, their observations
    sorted on ``device`` (the CPU when None): at 1,000 views (2 M observations) numpy's sorts took 0.5 s per call."""
    import torch

    count = len(model.xyz)
    if len(model.point) == 0:
        return np.zeros(0, dtype=bool)
    views = np.bincount(model.point, minlength=count)
    mean_error = np.bincount(model.point, errors, minlength=count) / np.maximum(views, 1)
    tiebreak = np.random.default_rng(seed).random(count)
    # Each point's place in the ranking, best first: its rank keys sorted once per point, not per observation.
    point_rank = np.empty(count, dtype=np.int64)
    point_rank[np.lexsort((tiebreak, mean_error, -np.minimum(views, LONG_TRACK)))] = np.arange(count)
    device = device or torch.device("cpu")
    frame = torch.as_tensor(model.frame, device=device)
    rank = torch.as_tensor(point_rank, device=device)[torch.as_tensor(model.point, device=device)]
    cell = torch.floor(torch.as_tensor(model.pixel, device=device) / CELL_PIXELS).long()
    cell_id = cell[:, 0] * (int(cell[:, 1].max()) + 1) + cell[:, 1]
    by_cell = _sorted_by(frame, cell_id - cell_id.min(), rank)
    rank_in_cell = _rank_in_groups(by_cell, frame * (int(cell_id.max()) + 1) + cell_id)
    by_frame = _sorted_by(frame, rank_in_cell, rank)
    return (_rank_in_groups(by_frame, frame) < per_frame).cpu().numpy()


def _sorted_by(*keys: torch.Tensor) -> torch.Tensor:
    """The stable order that sorts by the first of these non-negative integer keys, then the next, ...: one stable
    sort of their combination as one int64 key, or one stable sort per key (the last first) where even the
    combination would not fit."""
    import torch

    combined = torch.zeros_like(keys[0], dtype=torch.int64)
    span = 1
    for key in keys:
        size = int(key.max()) + 1 if len(key) else 1
        span *= size
        if span >= 1 << 62:
            order = torch.arange(len(keys[0]), device=keys[0].device)
            for one in reversed(keys):
                order = order[torch.sort(one[order], stable=True).indices]
            return order
        combined = combined * size + key
    return torch.sort(combined, stable=True).indices


def _rank_in_groups(order: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """[M] position of each element within its group, in ``order`` (which sorts the elements by group first)."""
    import torch

    sorted_group = group[order]
    starts = torch.searchsorted(sorted_group, sorted_group, side="left")
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - starts
    return rank


def split_long_tracks(
    model: SparseModel, max_length: int = MAX_TRACK_LENGTH, device: torch.device | None = None
) -> SparseModel:
    """Each point with more than ``max_length`` observations as ceil(length / max_length) points at the same
    position, each taking a run of its observations in frame order (runs differ by at most one in length):
    no observation is lost, the adjustment costs at most ``max_length`` times the observations per iteration,
    and each part couples only the cameras of its run (the reduced camera system stays sparse: a part spanning
    every frame would couple them all). Consecutive parts share no observation; the frames they have in common
    through the other points keep them one rigid whole. The observations are sorted on ``device`` (the CPU when
    None).

    Returns a model sorted by point, then frame, whose point ``i`` of the input became points
    ``first[i] .. first[i] + parts[i] - 1``.
    """
    import torch

    if max_length < 3:
        raise ValueError(f"max_length must be at least 3 (every part keeps two observations), not {max_length}")
    count = len(model.xyz)
    views = np.bincount(model.point, minlength=count)
    parts = np.maximum(-(-views // max_length), 1)
    first = np.cumsum(parts) - parts
    device = device or torch.device("cpu")
    point, frame = (torch.as_tensor(array, device=device) for array in (model.point, model.frame))
    position = _rank_in_groups(_sorted_by(point, frame), point)
    views_of, parts_of, first_of = (torch.as_tensor(array, device=device)[point] for array in (views, parts, first))
    new_point = first_of + position * parts_of // views_of
    resorted = _sorted_by(new_point, frame)
    new_point, resorted = new_point[resorted].cpu().numpy(), resorted.cpu().numpy()
    return SparseModel(
        np.repeat(model.xyz, parts, axis=0),
        new_point,
        model.frame[resorted],
        model.keypoint[resorted],
        model.pixel[resorted],
    )
