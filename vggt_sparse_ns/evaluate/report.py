"""One evaluation: read both camera sets, match frames, align, measure; the figures as a report."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggt_sparse_ns.evaluate.alignment import align_centres
from vggt_sparse_ns.evaluate.cameras import CameraSet, load_cameras
from vggt_sparse_ns.evaluate.config import EvaluateConfig
from vggt_sparse_ns.evaluate.errors import EvaluationError
from vggt_sparse_ns.evaluate.matching import match_frames
from vggt_sparse_ns.evaluate.metrics import (
    accuracy,
    camera_centres,
    extent,
    pose_auc,
    relative_focal_errors,
    relative_pose_errors,
)

MIN_MATCHED_FRAMES = 3
"""A Sim(3) needs three camera centres that are not all on one point."""


@dataclass(frozen=True)
class FrameCounts:
    output: int
    reference: int
    matched: int
    missing_in_output: list[str]
    """Reference frames with no output frame."""
    missing_in_reference: list[str]
    """Output frames with no reference frame (e.g. images the reference run did not register)."""


@dataclass(frozen=True)
class RelativePose:
    """Over all pairs of matched frames; thresholds and errors in degrees."""

    pairs: int
    pairs_without_baseline: int
    """Pairs whose reference cameras share a centre: judged by rotation alone."""
    rotation_accuracy: dict[float, float]
    """Threshold -> fraction of pairs whose relative rotation error is below it."""
    translation_accuracy: dict[float, float]
    """Threshold -> fraction of pairs whose translation-direction error is below it."""
    auc: dict[float, float]
    """Threshold -> pose AUC of max(rotation error, translation-direction error)."""
    rotation_error_median: float
    translation_error_median: float


@dataclass(frozen=True)
class Trajectory:
    """Camera centres after the Sim(3) alignment of the output onto the reference; lengths in reference units."""

    rmse: float
    median: float
    max: float
    extent: float
    """Largest distance between two matched reference camera centres."""
    rmse_fraction_of_extent: float
    scale: float
    """Scale of the alignment: reference units per output unit."""
    inliers: int
    """Frames the alignment was fitted to (within the inlier threshold)."""
    inlier_threshold: float


@dataclass(frozen=True)
class FocalLength:
    """|f - f_ref| / f_ref per matched frame, f = (fx + fy) / 2 in the reference's image size."""

    relative_error_median: float
    relative_error_mean: float
    relative_error_max: float


@dataclass(frozen=True)
class EvaluationReport:
    """The figures of one output against the reference."""

    output: str
    reference: str
    frames: FrameCounts
    relative_pose: RelativePose
    trajectory: Trajectory
    focal_length: FocalLength

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; thresholds become string keys ("5" for 5 degrees), NaN becomes None."""
        return _jsonable(asdict(self))


def evaluate(output: Path, reference: Path, config: EvaluateConfig | None = None) -> EvaluationReport:
    """Camera accuracy of an output dataset against a reference reconstruction.

    Args:
        output: an output folder, its transforms.json or its colmap/sparse/0 (any form ``load_cameras`` reads).
        reference: a COLMAP model folder or a transforms.json (e.g. the user's own COLMAP run).
        config: frame matching and thresholds; defaults when None.

    Returns:
        The figures; ``report.to_dict()`` is what `vggt-sparse-ns evaluate --json` prints.

    Raises:
        EvaluationError: a set cannot be read, no frames match, or fewer than 3 match.

    Example:
        >>> report = evaluate(Path("out_k16"), Path("colmap_run/sparse/0"))  # doctest: +SKIP
        >>> report.relative_pose.auc[30.0]  # doctest: +SKIP
        0.93
    """
    return compare_cameras(load_cameras(output), load_cameras(reference), config)


def compare_cameras(output: CameraSet, reference: CameraSet, config: EvaluateConfig | None = None) -> EvaluationReport:
    """``evaluate`` on camera sets already read."""
    config = config or EvaluateConfig()
    match = match_frames(output, reference, config)
    matched = len(match.output_indices)
    if matched == 0:
        raise EvaluationError(
            f"no frame of {output.source} matches a frame of {reference.source} by {config.match} "
            f"(e.g. {_example(output)} against {_example(reference)}): see --match and --name-map"
        )
    if matched < MIN_MATCHED_FRAMES:
        raise EvaluationError(
            f"only {matched} frame(s) of {output.source} match {reference.source}: "
            f"a Sim(3) alignment needs at least {MIN_MATCHED_FRAMES}"
        )
    estimate, truth = output.subset(match.output_indices), reference.subset(match.reference_indices)
    return EvaluationReport(
        output=output.source,
        reference=reference.source,
        frames=FrameCounts(
            output=len(output),
            reference=len(reference),
            matched=matched,
            missing_in_output=list(match.missing_in_output),
            missing_in_reference=list(match.missing_in_reference),
        ),
        relative_pose=_relative_pose(estimate, truth, config),
        trajectory=_trajectory(estimate, truth, config),
        focal_length=_focal_length(estimate, truth),
    )


def _relative_pose(estimate: CameraSet, truth: CameraSet, config: EvaluateConfig) -> RelativePose:
    rotation, translation = relative_pose_errors(estimate.T_camera_world, truth.T_camera_world)
    return RelativePose(
        pairs=len(rotation),
        pairs_without_baseline=int(np.isnan(translation).sum()),
        rotation_accuracy=accuracy(rotation, config.accuracy_thresholds_deg),
        translation_accuracy=accuracy(translation, config.accuracy_thresholds_deg),
        auc=pose_auc(rotation, translation, config.auc_thresholds_deg),
        rotation_error_median=float(np.median(rotation)),
        translation_error_median=float(np.nanmedian(translation)) if np.isfinite(translation).any() else float("nan"),
    )


def _trajectory(estimate: CameraSet, truth: CameraSet, config: EvaluateConfig) -> Trajectory:
    estimate_centres, truth_centres = camera_centres(estimate.T_camera_world), camera_centres(truth.T_camera_world)
    truth_extent = extent(truth_centres)
    if truth_extent <= 0:
        raise EvaluationError(f"the matched cameras of {truth.source} all sit at one point: no Sim(3) is defined")
    if extent(estimate_centres) <= 0:
        raise EvaluationError(f"the matched cameras of {estimate.source} all sit at one point: no Sim(3) is defined")
    alignment = align_centres(estimate_centres, truth_centres, config.inlier_threshold * truth_extent)
    residuals = np.linalg.norm(alignment.similarity.apply(estimate_centres) - truth_centres, axis=1)
    rmse = float(np.sqrt((residuals**2).mean()))
    return Trajectory(
        rmse=rmse,
        median=float(np.median(residuals)),
        max=float(residuals.max()),
        extent=truth_extent,
        rmse_fraction_of_extent=rmse / truth_extent,
        scale=alignment.similarity.scale,
        inliers=int(alignment.inliers.sum()),
        inlier_threshold=alignment.threshold,
    )


def _focal_length(estimate: CameraSet, truth: CameraSet) -> FocalLength:
    errors = relative_focal_errors(estimate.focal_lengths, estimate.sizes, truth.focal_lengths, truth.sizes)
    return FocalLength(
        relative_error_median=float(np.median(errors)),
        relative_error_mean=float(errors.mean()),
        relative_error_max=float(errors.max()),
    )


def _example(cameras: CameraSet) -> str:
    return repr(cameras.names[0]) if len(cameras) else "no frames"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {_key(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _key(key: Any) -> str:
    return f"{key:g}" if isinstance(key, float) else str(key)
