"""Which tracks bundle adjustment sees: a well-spread subset per frame, long tracks split."""

from __future__ import annotations

import numpy as np
import pytest

from vggt_sparse_ns.refine.track_selection import (
    CELL_PIXELS,
    LONG_TRACK,
    adjustment_tracks,
    frame_choices,
    split_long_tracks,
    spread_subset,
)
from vggt_sparse_ns.refine.triangulation import SparseModel


def _model(observations: list[tuple[int, int, float, float]], points: int | None = None) -> SparseModel:
    """A model from (point, frame, x, y) rows, sorted by point then frame; xyz = (point, 0, 0)."""
    rows = sorted(observations)
    point = np.array([r[0] for r in rows])
    count = points if points is not None else int(point.max()) + 1
    xyz = np.column_stack([np.arange(count, dtype=np.float64), np.zeros(count), np.zeros(count)])
    return SparseModel(
        xyz, point, np.array([r[1] for r in rows]), np.arange(len(rows)), np.array([[r[2], r[3]] for r in rows])
    )


def _random_model(frames: int, points: int, seen: float, seed: int) -> tuple[SparseModel, np.ndarray]:
    rng = np.random.default_rng(seed)
    observations = [
        (p, f, rng.uniform(0, 1920), rng.uniform(0, 1080))
        for p in range(points)
        for f in range(frames)
        if rng.random() < seen
    ]
    model = _model(observations, points).select(np.ones(len(observations), bool))
    return model, rng.uniform(0, 2, len(model.point))


def test_every_frame_keeps_at_least_the_points_asked_for_when_it_has_them() -> None:
    model, errors = _random_model(frames=30, points=400, seen=0.2, seed=0)
    subset = spread_subset(model, errors, per_frame=25)
    assert len(subset) < len(model)
    kept = np.bincount(subset.frame, minlength=30)
    assert np.all(kept >= np.minimum(25, np.bincount(model.frame, minlength=30)))


def _chosen_by_frame_zero(model: SparseModel, errors: np.ndarray, per_frame: int) -> set[int]:
    chosen = frame_choices(model, errors, per_frame) & (model.frame == 0)
    return {int(p) for p in model.point[chosen]}


def test_a_frame_takes_the_best_point_of_every_cell_before_a_second_one_of_any() -> None:
    # Frame 0: five long tracks crowded in one cell, and one short track in each of two other cells.
    crowded = [(p, f, 10.0 + p, 10.0) for p in range(5) for f in range(4)]
    apart = [(5, 0, 10.0 + 3 * CELL_PIXELS, 10.0), (5, 1, 50.0, 50.0)]
    apart += [(6, 0, 10.0, 10.0 + 3 * CELL_PIXELS), (6, 2, 50.0, 50.0)]
    model = _model(crowded + apart)
    chosen = _chosen_by_frame_zero(model, np.zeros(len(model.point)), per_frame=3)
    assert len(chosen) == 3 and {5, 6} <= chosen


def test_within_a_cell_the_longer_track_wins_up_to_the_long_track_length_then_the_lower_error() -> None:
    # Points 0 (2 views) and 1 (3 views) share frame 0's cell: the longer wins.
    short = _model([(0, f, 10.0, 10.0) for f in range(2)] + [(1, f, 20.0, 20.0) for f in range(3)])
    assert _chosen_by_frame_zero(short, np.zeros(5), per_frame=1) == {1}
    # Both at least LONG_TRACK long: the lower mean error wins over the longer track.
    long = _model([(0, f, 10.0, 10.0) for f in range(LONG_TRACK + 3)] + [(1, f, 20.0, 20.0) for f in range(LONG_TRACK)])
    errors = np.concatenate([np.full(LONG_TRACK + 3, 1.5), np.full(LONG_TRACK, 0.5)])
    assert _chosen_by_frame_zero(long, errors, per_frame=1) == {1}
    assert _chosen_by_frame_zero(long, errors[::-1], per_frame=1) == {0}


def test_a_long_track_is_split_into_runs_of_frames_without_losing_an_observation() -> None:
    model = _model([(0, f, float(f), 0.0) for f in range(45)] + [(1, f, 0.0, 0.0) for f in (3, 9)])
    split = split_long_tracks(model, max_length=20)
    lengths = np.bincount(split.point)
    assert lengths.tolist() == [15, 15, 15, 2]
    observations = np.stack([split.frame, split.keypoint], axis=1)
    np.testing.assert_array_equal(
        np.unique(observations, axis=0), np.unique(np.stack([model.frame, model.keypoint], axis=1), axis=0)
    )
    runs = [split.frame[split.point == p] for p in range(3)]
    assert all(run.tolist() == list(range(15 * k, 15 * (k + 1))) for k, run in enumerate(runs))
    np.testing.assert_array_equal(split.xyz[:3], np.zeros((3, 3)))
    assert np.all(np.diff(split.point) >= 0)


@pytest.mark.parametrize("length", [3, 4, 5, 7, 21, 41, 100])
def test_every_part_of_a_split_track_keeps_two_observations_at_most_the_limit(length: int) -> None:
    split = split_long_tracks(_model([(0, f, 0.0, 0.0) for f in range(length)]), max_length=3)
    assert np.bincount(split.point).min() >= 2 and np.bincount(split.point).max() <= 3


def test_the_adjustment_problem_grows_with_frames_not_with_track_length() -> None:
    model, errors = _random_model(frames=60, points=300, seen=0.6, seed=1)
    problem = adjustment_tracks(model, errors, per_frame=40)
    assert np.bincount(problem.point).max() <= 20
    assert np.sum(np.bincount(problem.point) ** 2) <= 20 * len(problem.point)
    assert np.all(np.bincount(problem.frame, minlength=60) >= 40)


def test_sort_keys_are_combined_in_64_bits_whatever_their_type() -> None:
    import torch

    from vggt_sparse_ns.refine.track_selection import _sorted_by

    first, second = torch.tensor([70000, 1], dtype=torch.int32), torch.tensor([0, 40000], dtype=torch.int32)
    assert _sorted_by(first, second).tolist() == [1, 0]  # 70000 * 40001 overflows 32 bits
