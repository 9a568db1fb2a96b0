"""Geometric verification of matched pairs with pycolmap's two-view geometry (RANSAC over the fundamental,
essential and homography models, as COLMAP verifies), and tracks across frames from the verified matches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from vggt_sparse_ns.refine.features import Features


def verify_pairs(
    features: Sequence[Features],
    pairs: np.ndarray,
    matches: Sequence[np.ndarray],
    intrinsics: np.ndarray,
    *,
    min_inliers: int,
    workers: int | None = None,
) -> list[np.ndarray]:
    """The inlier matches of each pair ([0, 2] when the pair has fewer than ``min_inliers``); ``intrinsics``
    [S, 3, 3] in full-resolution pixels serve as the cameras' (uncalibrated) priors."""
    import pycolmap

    options = pycolmap.TwoViewGeometryOptions()
    options.min_num_inliers = min_inliers
    options.ransac.random_seed = 0
    cameras = [
        pycolmap.Camera(model="PINHOLE", width=f.size[0], height=f.size[1], params=[k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
        for f, k in zip(features, intrinsics, strict=True)
    ]
    empty = np.zeros((0, 2), dtype=np.int64)

    def verify(index: int) -> np.ndarray:
        i, j = pairs[index]
        candidate = matches[index]
        if len(candidate) < min_inliers:
            return empty
        geometry = pycolmap.estimate_two_view_geometry(
            cameras[i],
            features[i].keypoints,
            cameras[j],
            features[j].keypoints,
            candidate.astype(np.uint32),
            options,
        )
        inliers = np.asarray(geometry.inlier_matches, dtype=np.int64).reshape(-1, 2)
        return inliers if len(inliers) >= min_inliers else empty

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
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
    # A component with two keypoints of one frame is ambiguous: its frame count differs from its size.
    frames_seen = np.unique(np.stack([component, frame_of_node], axis=1), axis=0)[:, 0]
    distinct_frames = np.bincount(frames_seen, minlength=total)
    good = (size >= 2) & (distinct_frames == size)
    nodes = np.flatnonzero(good[component])
    order = np.lexsort((frame_of_node[nodes], component[nodes]))
    nodes = nodes[order]
    _, track = np.unique(component[nodes], return_inverse=True)
    frames = frame_of_node[nodes]
    return track.astype(np.int64), frames, nodes - offsets[frames]
