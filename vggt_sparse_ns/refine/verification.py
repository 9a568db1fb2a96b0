"""Geometric verification of matched pairs (a fundamental matrix by pycolmap's LO-RANSAC), and tracks across
frames from the verified matches."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vggt_sparse_ns.cpus import usable_cpus
from vggt_sparse_ns.refine.features import Features

VERIFY_SAMPLE = 1024
"""RANSAC sees at most this many of a pair's matches (spread over the list); every match is then judged by its
distance to the epipolar lines of the model found. Measured on 4,770 matches of two 1920x1080 views: pycolmap's
full two-view geometry (E, F and H) took 0.36 s, the fundamental matrix alone on 512 of them 0.006 s, with the
same inliers. 512 was tried again at 1,000 generated views (H100, verification running beside the matching then):
no time gained (the two stages 14.1 s against 13.1 s), and the cameras came out further from the truth (rotations
0.0201 against 0.0074 degrees, one run each)."""


RANSAC_TRIALS = {"min_num_trials": 100, "max_num_trials": 10_000, "confidence": 0.999, "min_inlier_ratio": 0.25}
"""COLMAP's two-view geometry settings (``TwoViewGeometryOptions().ransac``) instead of pycolmap's general RANSAC
defaults (up to 100,000 trials for inlier ratios down to 1 %), which spent up to ~30 ms on each pair of few
inliers: 28.6 s for 14,151 pairs on 16 threads at 1,000 frames (docs/benchmarks/refine.json)."""


def sampson_distances(fundamental: np.ndarray, points_a: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """[M] first-order geometric distance (pixels) of each correspondence to the epipolar geometry ``fundamental``."""
    homogeneous_a = np.concatenate([points_a, np.ones((len(points_a), 1))], axis=1)
    homogeneous_b = np.concatenate([points_b, np.ones((len(points_b), 1))], axis=1)
    lines_b = homogeneous_a @ fundamental.T  # F x_a
    lines_a = homogeneous_b @ fundamental  # F^T x_b
    algebraic = np.einsum("ij,ij->i", homogeneous_b, lines_b)
    norm = lines_b[:, 0] ** 2 + lines_b[:, 1] ** 2 + lines_a[:, 0] ** 2 + lines_a[:, 1] ** 2
    return np.abs(algebraic) / np.sqrt(np.maximum(norm, 1e-300))


def verify_pairs(
    features: Sequence[Features],
    pairs: np.ndarray,
    matches: Sequence[np.ndarray],
    *,
    max_error: float,
    min_inliers: int,
    workers: int | None = None,
) -> list[np.ndarray]:
    """The matches of each pair that agree with one epipolar geometry: a fundamental matrix found by pycolmap's
    LO-RANSAC, matches within ``max_error`` pixels of it kept ([0, 2] when fewer than ``min_inliers``). pycolmap
    releases the GIL here, so pairs run in threads. Uncalibrated on purpose: the predicted focal lengths may be off."""
    import pycolmap

    options = pycolmap.RANSACOptions(max_error=max_error, random_seed=0, **RANSAC_TRIALS)
    empty = np.zeros((0, 2), dtype=np.int64)

    def verify(index: int) -> np.ndarray:
        i, j = pairs[index]
        candidate = matches[index]
        if len(candidate) < min_inliers:
            return empty
        points_a, points_b = features[i].keypoints[candidate[:, 0]], features[j].keypoints[candidate[:, 1]]
        sample = np.linspace(0, len(candidate) - 1, min(len(candidate), VERIFY_SAMPLE)).astype(np.int64)
        found = pycolmap.estimate_fundamental_matrix(points_a[sample], points_b[sample], options)
        if found is None:
            return empty
        inliers = candidate[sampson_distances(found["F"], points_a, points_b) <= max_error]
        return inliers if len(inliers) >= min_inliers else empty

    with ThreadPoolExecutor(max_workers=workers or usable_cpus()) as pool:
        return list(pool.map(verify, range(len(pairs))))


def build_tracks(
    keypoint_counts: Sequence[int], pairs: np.ndarray, matches: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected keypoints across frames (connected components of the match graph), as observations.

    Returns (track [M], frame [M], keypoint [M]) sorted by track, then frame. A track that holds two
    keypoints of one frame is ambiguous and dropped, as is every keypoint without a match.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offsets = np.concatenate([[0], np.cumsum(keypoint_counts)]).astype(np.int64)
    edges = [
        np.stack([offsets[i] + found[:, 0], offsets[j] + found[:, 1]], axis=1)
        for (i, j), found in zip(pairs, matches, strict=True)
        if len(found)
    ]
    edges = np.concatenate(edges) if edges else np.zeros((0, 2), dtype=np.int64)
    total = int(offsets[-1])
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(total, total))
    _, component = connected_components(graph, directed=False)
    frame_of_node = np.repeat(np.arange(len(keypoint_counts)), np.diff(offsets))
    size = np.bincount(component, minlength=total)
    # Matched keypoints sorted by (component, frame) as one integer each (one 1-D sort: a two-key lexsort and
    # np.unique took seconds at millions of keypoints). A component with two keypoints of one frame is ambiguous:
    # two equal keys side by side.
    matched = np.flatnonzero(size[component] >= 2)
    key = component[matched].astype(np.int64) * len(keypoint_counts) + frame_of_node[matched]
    order = np.argsort(key)
    nodes, key = matched[order], key[order]
    ambiguous = np.zeros(total, dtype=bool)
    ambiguous[component[nodes[1:][key[1:] == key[:-1]]]] = True
    nodes = nodes[~ambiguous[component[nodes]]]
    # Tracks numbered in component order (the nodes are sorted by component).
    track = np.cumsum(np.r_[False, component[nodes[1:]] != component[nodes[:-1]]])[: len(nodes)]
    frames = frame_of_node[nodes]
    return track.astype(np.int64), frames, nodes - offsets[frames]


def keypoint_pixels(features: Sequence[Features], frame: np.ndarray, keypoint: np.ndarray) -> np.ndarray:
    """[M, 2] full-resolution pixels of keypoint ``keypoint[m]`` of frame ``frame[m]``."""
    if len(frame) == 0:
        return np.zeros((0, 2))
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in features])])
    return np.concatenate([f.keypoints for f in features])[offsets[frame] + keypoint]
