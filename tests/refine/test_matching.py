"""Mutual nearest neighbours with Lowe's ratio test, batched over pairs of different sizes."""

from __future__ import annotations

import numpy as np
import torch

from vggt_sparse_ns.refine.features import Features
from vggt_sparse_ns.refine.matching import match_pairs


def _features(descriptors: np.ndarray) -> Features:
    descriptors = descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)
    return Features(np.zeros((len(descriptors), 2)), descriptors.astype(np.float32), (100, 100))


def _reference(a: np.ndarray, b: np.ndarray, ratio: float) -> set[tuple[int, int]]:
    """The definition, one descriptor at a time."""
    distances = np.linalg.norm(a[:, None] - b[None], axis=2)
    found = set()
    for i in range(len(a)):
        order = np.argsort(distances[i])
        j = order[0]
        second = distances[i, order[1]] if len(b) > 1 else np.inf
        if distances[i, j] < ratio * second and np.argmin(distances[:, j]) == i:
            found.add((i, int(j)))
    return found


def test_matches_are_mutual_nearest_neighbours_that_pass_the_ratio_test() -> None:
    rng = np.random.default_rng(0)
    images = [_features(rng.standard_normal((n, 128))) for n in (40, 25, 60, 1)]
    # Image 1 holds noisy copies of some of image 0's descriptors: those must match.
    copies = images[0].descriptors[:20] + 0.05 * rng.standard_normal((20, 128)).astype(np.float32)
    images[1] = _features(np.concatenate([copies, images[1].descriptors[:5]]))
    pairs = np.array([[0, 1], [0, 2], [1, 2], [2, 3], [0, 3]])
    matches = match_pairs(images, pairs, ratio=0.8, device=torch.device("cpu"))
    for (i, j), found in zip(pairs, matches, strict=True):
        expected = _reference(images[i].descriptors, images[j].descriptors, 0.8)
        assert {tuple(m) for m in found.tolist()} == expected
    assert {(k, k) for k in range(20)} <= {tuple(m) for m in matches[0].tolist()}


def test_pairs_matched_in_small_batches_give_the_same_matches(monkeypatch) -> None:
    rng = np.random.default_rng(1)
    images = [_features(rng.standard_normal((n, 128))) for n in (30, 50, 20, 45)]
    pairs = np.array([[0, 1], [0, 2], [1, 3], [2, 3]])
    together = match_pairs(images, pairs, ratio=0.9, device=torch.device("cpu"))
    monkeypatch.setattr("vggt_sparse_ns.refine.matching.BATCH_BYTES", {"cpu": 1})
    one_by_one = match_pairs(images, pairs, ratio=0.9, device=torch.device("cpu"))
    for a, b in zip(together, one_by_one, strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_image_without_features_matches_nothing() -> None:
    empty = Features(np.zeros((0, 2)), np.zeros((0, 128), np.float32), (100, 100))
    other = _features(np.random.default_rng(2).standard_normal((10, 128)))
    for images in ([empty, other], [other, empty]):
        matches = match_pairs(images, np.array([[0, 1]]), ratio=0.8, device=torch.device("cpu"))
        assert matches[0].shape == (0, 2)
