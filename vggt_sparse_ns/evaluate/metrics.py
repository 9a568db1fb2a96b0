"""Camera accuracy figures over matched frames: relative pose errors of frame pairs, pose AUC, trajectory error, focal
error. Poses are camera-from-world (OpenCV axes) [R | t]; both sets list the same frames in the same order.

Relative pose errors need no alignment: for each pair i < j they compare the motion from camera j to camera i,
rotation R_i R_j^T and translation direction t_i - R_i R_j^T t_j = R_i (c_j - c_i), which any similarity of the
world leaves unchanged.
"""

from __future__ import annotations

import numpy as np

ZERO_BASELINE = 1e-9
"""A baseline shorter than this fraction of its set's extent has no direction."""


def camera_centres(T_camera_world: np.ndarray) -> np.ndarray:
    """(N, 3) centres -R^T t of (N, 3, 4) camera-from-world poses."""
    rotation, translation = T_camera_world[:, :, :3], T_camera_world[:, :, 3:]
    return -(np.swapaxes(rotation, 1, 2) @ translation)[:, :, 0]


def extent(points: np.ndarray) -> float:
    """The largest distance between two of the (N, 3) points (0 for fewer than two); O(N) memory."""
    rows = (np.linalg.norm(points[i + 1 :] - points[i], axis=1).max() for i in range(len(points) - 1))
    return float(max(rows, default=0.0))


def relative_pose_errors(T_estimate: np.ndarray, T_reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation-direction errors, in degrees, of every frame pair i < j (pairs in row-major order:
    (0, 1), (0, 2), ..., (1, 2), ...).

    The translation error of a pair whose reference cameras share a centre is NaN (no direction to compare); a pair
    whose estimated cameras share a centre while the reference ones do not gets 180 (no direction is wrong).

    Args:
        T_estimate: (N, 3, 4) camera-from-world poses being judged.
        T_reference: (N, 3, 4) reference poses of the same frames.

    Returns:
        (N(N-1)/2,) rotation errors and (N(N-1)/2,) translation-direction errors.
    """
    # Rotation error of pair (i, j) = angle of (R_i R_j^T)^T Q_i Q_j^T, the same angle as A_j^T A_i with
    # A = R^T Q; ||A_i - A_j||_F = 2 sqrt(2) sin(angle / 2) gives it without arccos' loss of precision near 0.
    discrepancy = (np.swapaxes(T_estimate[:, :, :3], 1, 2) @ T_reference[:, :, :3]).reshape(-1, 9)
    estimate_centres, reference_centres = camera_centres(T_estimate), camera_centres(T_reference)
    estimate_zero = ZERO_BASELINE * extent(estimate_centres)
    reference_zero = ZERO_BASELINE * extent(reference_centres)
    count = len(T_estimate)
    pairs = count * (count - 1) // 2
    rotation_errors, translation_errors = np.empty(pairs), np.empty(pairs)
    start = 0
    for i in range(count - 1):  # one row of pairs (i, j > i) at a time: contiguous slices, no pair-sized temporaries
        stop = start + count - 1 - i
        chord = np.linalg.norm(discrepancy[i + 1 :] - discrepancy[i], axis=1)
        rotation_errors[start:stop] = np.degrees(2 * np.arcsin(np.clip(chord / (2 * np.sqrt(2)), 0.0, 1.0)))
        # directions from camera i to camera j in camera i's axes: R_i (c_j - c_i) and Q_i (d_j - d_i)
        estimate = (estimate_centres[i + 1 :] - estimate_centres[i]) @ T_estimate[i, :, :3].T
        reference = (reference_centres[i + 1 :] - reference_centres[i]) @ T_reference[i, :, :3].T
        translation_errors[start:stop] = _angles(estimate, reference, estimate_zero, reference_zero)
        start = stop
    return rotation_errors, translation_errors


def _angles(estimate: np.ndarray, reference: np.ndarray, estimate_zero: float, reference_zero: float) -> np.ndarray:
    """Degrees between (P, 3) directions, by atan2 (precise at 0 and 180 degrees)."""
    angles = np.degrees(
        np.arctan2(np.linalg.norm(np.cross(estimate, reference), axis=1), (estimate * reference).sum(axis=1))
    )
    angles[np.linalg.norm(estimate, axis=1) <= estimate_zero] = 180.0
    angles[np.linalg.norm(reference, axis=1) <= reference_zero] = np.nan
    return angles


def accuracy(errors: np.ndarray, thresholds: tuple[float, ...]) -> dict[float, float]:
    """Fraction of the finite errors below each threshold (NaN when none is finite)."""
    finite = errors[np.isfinite(errors)]
    return {t: float((finite < t).mean()) if len(finite) else float("nan") for t in thresholds}


def pose_auc(rotation_errors: np.ndarray, translation_errors: np.ndarray, thresholds: tuple[float, ...]) -> dict:
    """Area under the accuracy curve of max(rotation error, translation error) up to each threshold, over the
    threshold: the exact integral, which equals the mean over pairs of max(0, 1 - error / threshold). A pair
    without a reference baseline is judged by its rotation alone."""
    pair_errors = np.fmax(rotation_errors, translation_errors)
    if not len(pair_errors):
        return {t: float("nan") for t in thresholds}
    return {t: float(np.clip(1.0 - pair_errors / t, 0.0, None).mean()) for t in thresholds}


def relative_focal_errors(
    estimate_focal: np.ndarray, estimate_sizes: np.ndarray, reference_focal: np.ndarray, reference_sizes: np.ndarray
) -> np.ndarray:
    """(N,) |f - f_ref| / f_ref per frame, f the mean of fx and fy, with the estimate's fx and fy first rescaled to
    the reference's image width and height (the same image saved at another size keeps its field of view)."""
    rescaled = estimate_focal * (reference_sizes / estimate_sizes)
    return np.abs(rescaled.mean(axis=1) - reference_focal.mean(axis=1)) / reference_focal.mean(axis=1)
