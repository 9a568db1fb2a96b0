"""Tracks from verified matches, and which pairs are matched."""

from __future__ import annotations

import numpy as np
import torch

from vggt_sparse_ns.refine.features import Features
from vggt_sparse_ns.refine.pairs import select_pairs, sequential_pairs
from vggt_sparse_ns.refine.verification import build_tracks


def test_matches_chain_into_tracks_across_frames() -> None:
    pairs = np.array([[0, 1], [1, 2]])
    matches = [np.array([[0, 3], [1, 4]]), np.array([[3, 7]])]
    track, frame, keypoint = build_tracks([2, 5, 8], pairs, matches)
    tracks = {tuple(zip(frame[track == t].tolist(), keypoint[track == t].tolist(), strict=True)) for t in set(track)}
    assert tracks == {((0, 0), (1, 3), (2, 7)), ((0, 1), (1, 4))}


def test_a_track_with_two_keypoints_in_one_frame_is_dropped() -> None:
    pairs = np.array([[0, 1], [1, 2], [0, 2]])
    # 0:0 - 1:0 - 2:0 and 0:1 - 2:0: keypoints 0 and 1 of frame 0 end in one track.
    matches = [np.array([[0, 0]]), np.array([[0, 0]]), np.array([[1, 0], [2, 1]])]
    track, frame, keypoint = build_tracks([3, 1, 2], pairs, matches)
    assert set(zip(frame.tolist(), keypoint.tolist(), strict=True)) == {(0, 2), (2, 1)}
    assert len(set(track.tolist())) == 1


def test_tracks_are_numbered_from_zero_sorted_by_track_then_frame() -> None:
    pairs = np.array([[1, 2], [0, 2], [0, 1]])
    matches = [np.array([[0, 1]]), np.array([[1, 0], [0, 1]]), np.array([[2, 1]])]
    track, frame, keypoint = build_tracks([3, 2, 2], pairs, matches)
    # Three tracks: (0:0, 1:0, 2:1), (0:1, 2:0) and (0:2, 1:1).
    assert sorted(set(track.tolist())) == [0, 1, 2]
    assert np.all(np.diff(track) >= 0) and np.all(np.diff(frame)[np.diff(track) == 0] > 0)
    assert len(track) == len(frame) == len(keypoint) == 7


def test_no_matches_give_no_tracks() -> None:
    track, frame, keypoint = build_tracks([4, 0, 3], np.array([[0, 1], [0, 2]]), [np.zeros((0, 2), np.int64)] * 2)
    assert len(track) == len(frame) == len(keypoint) == 0


def _features(count: int, rng: np.random.Generator) -> list[Features]:
    return [
        Features(np.zeros((50, 2)), rng.standard_normal((50, 128)).astype(np.float32), (64, 64)) for _ in range(count)
    ]


def test_a_frame_graph_gives_its_edges_and_sequential_neighbours() -> None:
    edges = np.array([[0, 5], [2, 7], [5, 0]])
    pairs = select_pairs(
        _features(8, np.random.default_rng(0)), edges, neighbors=3, sequential=1, device=torch.device("cpu")
    )
    expected = {(0, 5), (2, 7)} | {(i, i + 1) for i in range(7)}
    assert {tuple(p) for p in pairs.tolist()} == expected


def test_a_dense_run_matches_each_frame_with_its_most_similar_frames_not_all_pairs() -> None:
    rng = np.random.default_rng(1)
    features = _features(30, rng)
    for index in range(1, 30, 2):  # odd frames repeat the frame before them: their most similar frame
        features[index] = features[index - 1]
    pairs = select_pairs(features, None, neighbors=2, sequential=0, device=torch.device("cpu"))
    assert len(pairs) <= 30 * 2 < 30 * 29 / 2
    assert {(i, i + 1) for i in range(0, 30, 2)} <= {tuple(p) for p in pairs.tolist()}
    assert (pairs[:, 0] < pairs[:, 1]).all()


def test_sequential_pairs_join_each_frame_to_the_next_ones() -> None:
    assert sequential_pairs(4, 2).tolist() == [[0, 1], [1, 2], [2, 3], [0, 2], [1, 3]]


def test_verification_keeps_matches_on_one_epipolar_geometry_and_drops_the_rest() -> None:
    from textured_scene import look_at

    from vggt_sparse_ns.refine.cameras import CameraSet, project_points
    from vggt_sparse_ns.refine.verification import verify_pairs

    rng = np.random.default_rng(5)
    poses = np.stack([look_at(np.array([x, 0.0, 0.0]), np.array([0.2, 0.1, 5.0])) for x in (0.0, 0.8)])
    intrinsic = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    cameras = CameraSet(poses, np.stack([intrinsic] * 2), np.zeros((2, 4)))
    points = rng.uniform([-1.5, -1, 4], [1.5, 1, 7], (200, 3))
    keypoints = [project_points(cameras, np.full(200, f), points)[0] for f in (0, 1)]
    keypoints[1][150:] = rng.uniform(0, 480, (50, 2))  # the last 50 matches are wrong
    features = [Features(k, np.zeros((200, 128), np.float32), (640, 480)) for k in keypoints]
    matches = [np.stack([np.arange(200), np.arange(200)], axis=1)]
    verified = verify_pairs(features, np.array([[0, 1]]), matches, max_error=2.0, min_inliers=15)[0]
    kept = set(verified[:, 0].tolist())
    assert set(range(150)) <= kept and len(kept - set(range(150))) <= 2  # a wrong match may fall on its line
    few = verify_pairs(features, np.array([[0, 1]]), [matches[0][:10]], max_error=2.0, min_inliers=15)[0]
    assert few.shape == (0, 2)
