"""Sim(3) alignment of one set of camera centres onto another: Umeyama's closed form inside a deterministic RANSAC.

Why not pycolmap's ``align_reconstruction_to_locations``: it needs the output as a pycolmap Reconstruction
(transforms.json is not one), takes its inlier threshold in absolute units (the reference's scale is not known in
advance) and hides its sampling. Here the threshold is a fraction of the reference's extent, samples are drawn
with a fixed seed, and the closed form is a few lines that tests check against known transforms.
Collinear centres (a straight video path) leave the rotation about the line free; no reported figure depends on
it, since the trajectory error uses centres only and the relative-pose figures need no alignment.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

MAX_MINIMAL_SAMPLES = 2000
"""Triplets tried: all of them when there are at most this many, else this many drawn with ``SAMPLING_SEED``."""
SAMPLING_SEED = 0
MAX_REFITS = 10
"""Refits on the inliers of the previous fit, until the inlier set stops changing."""


@dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation."""

    scale: float
    rotation: np.ndarray
    """(3, 3) proper rotation."""
    translation: np.ndarray
    """(3,)"""

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points mapped."""
        return self.scale * points @ self.rotation.T + self.translation


@dataclass(frozen=True)
class Alignment:
    """The fitted similarity and which cameras it was fitted to."""

    similarity: Similarity
    inliers: np.ndarray
    """(N,) bool: within the inlier threshold of their reference centre after alignment."""
    threshold: float
    """The inlier threshold in reference units."""


def umeyama(source: np.ndarray, target: np.ndarray) -> Similarity | None:
    """The similarity minimising the squared distances from mapped ``source`` points to ``target`` points
    (Umeyama 1991); None when the source points coincide (no scale is defined).

    Args:
        source: (N, 3) points, N >= 3 for a unique answer (N = 2 leaves the rotation about their line free).
        target: (N, 3) points, pairwise with ``source``.
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    source_variance = (source_centred**2).sum() / len(source)
    if source_variance <= 1e-24 * max(1.0, float(np.abs(source).max()) ** 2):
        return None
    covariance = target_centred.T @ source_centred / len(source)
    u, singular_values, vt = np.linalg.svd(covariance)
    signs = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        signs[2] = -1.0
    rotation = (u * signs) @ vt
    scale = float((singular_values * signs).sum() / source_variance)
    return Similarity(scale=scale, rotation=rotation, translation=target_mean - scale * rotation @ source_mean)


def align_centres(source: np.ndarray, target: np.ndarray, threshold: float) -> Alignment:
    """A similarity mapping ``source`` centres onto ``target`` centres that a few wrong centres do not drag.

    Each triplet of cameras proposes a similarity; the one with the most centres within ``threshold`` (ties: the
    smallest summed residual, each capped at ``threshold``) wins and is refitted on its inliers until they stop
    changing. When no triplet gathers 3 inliers, the least-squares fit to all centres is used.

    Args:
        source: (N, 3) output camera centres, N >= 3.
        target: (N, 3) reference camera centres.
        threshold: inlier distance in target units (> 0).
    """
    best = _best_minimal_fit(source, target, threshold)
    inliers = np.ones(len(source), dtype=bool) if best is None else _inliers(best, source, target, threshold)
    if inliers.sum() < 3:
        inliers = np.ones(len(source), dtype=bool)
    similarity = best
    for _ in range(MAX_REFITS):
        refit = umeyama(source[inliers], target[inliers])
        if refit is None:
            break
        similarity = refit
        refit_inliers = _inliers(similarity, source, target, threshold)
        if refit_inliers.sum() < 3 or np.array_equal(refit_inliers, inliers):
            break
        inliers = refit_inliers
    if similarity is None:
        raise ValueError("the output camera centres coincide: no similarity maps them onto the reference")
    return Alignment(
        similarity=similarity, inliers=_inliers(similarity, source, target, threshold), threshold=threshold
    )


def _inliers(similarity: Similarity, source: np.ndarray, target: np.ndarray, threshold: float) -> np.ndarray:
    return np.linalg.norm(similarity.apply(source) - target, axis=1) < threshold


def _best_minimal_fit(source: np.ndarray, target: np.ndarray, threshold: float) -> Similarity | None:
    best, best_score = None, (-1, 0.0)
    for triplet in _triplets(len(source)):
        candidate = umeyama(source[triplet], target[triplet])
        if candidate is None:
            continue
        residuals = np.linalg.norm(candidate.apply(source) - target, axis=1)
        score = (int((residuals < threshold).sum()), -float(np.minimum(residuals, threshold).sum()))
        if score > best_score:
            best, best_score = candidate, score
    return best


def _triplets(count: int) -> np.ndarray:
    """(K, 3) index triplets: all of them, or ``MAX_MINIMAL_SAMPLES`` distinct random ones (fixed seed)."""
    if count * (count - 1) * (count - 2) // 6 <= MAX_MINIMAL_SAMPLES:
        return np.array(list(itertools.combinations(range(count), 3)), dtype=np.int64).reshape(-1, 3)
    rng = np.random.default_rng(SAMPLING_SEED)
    triplets = np.sort(np.stack([rng.choice(count, 3, replace=False) for _ in range(MAX_MINIMAL_SAMPLES)]), axis=1)
    return np.unique(triplets, axis=0)
