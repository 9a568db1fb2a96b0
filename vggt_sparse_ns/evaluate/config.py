"""Evaluation settings (tyro-friendly: each field's docstring is its command-line help)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class EvaluateConfig:
    """How frames are matched and which thresholds the figures use."""

    match: Literal["name", "stem", "order"] = "name"
    """How output frames find their reference frames: "name" by file name without folders (images/frame_00001.png
    matches frame_00001.png); "stem" by file name without folders and extension (frame_00001.png matches
    frame_00001.jpg); "order" the i-th output frame with the i-th reference frame, both sorted by file name (both
    sets must hold the same number of frames)."""
    name_map: Path | None = None
    """A JSON object {output file name: reference file name} applied before matching by --match name or stem, for
    sets named differently (e.g. our frame_00001.png against the original IMG_0001.JPG); output frames it does not
    name stay unmatched."""
    accuracy_thresholds_deg: tuple[float, ...] = (1.0, 3.0, 5.0, 15.0)
    """Relative rotation and translation-direction accuracy: the fraction of frame pairs whose error is below each
    of these angles (degrees)."""
    auc_thresholds_deg: tuple[float, ...] = (5.0, 15.0, 30.0)
    """Pose AUC: the area under the accuracy curve of max(rotation error, translation-direction error) from 0 to
    each of these angles (degrees), divided by the angle."""
    inlier_threshold: float = 0.05
    """Sim(3) alignment: a camera is an inlier when its aligned centre lies within this fraction of the reference
    cameras' extent (largest distance between two reference camera centres) of its reference centre. The alignment
    is fitted to inliers only, so a few lost cameras do not drag the others; the trajectory error counts all."""
