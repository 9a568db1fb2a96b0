"""VGGT's depth as a weak prior in the bundle adjustment: in each frame, the depths of some of its adjusted points
(spread over the image) are held, loosely and robustly, to that frame's predicted depth at their keypoints.

Views linked only by two-view tracks (a camera panning around a room) leave the distances between neighbours out
of the images: the reprojection errors do not change when a baseline and its points' depths grow together, so the
pose prior keeps VGGT's error there. Its depth maps measure those depths directly, in the scale its cameras share.

Whether they can be trusted shows only after the prior was used: before, the depths of two-view tracks are as far
off as the baselines (measured on 12 views turning outward with depth rendered from the truth: log-ratios' median
absolute deviation 0.42, against 0.1 asked by ``agreeing_depth_scale``). So the caller adjusts with the prior and
keeps the result only where the points it leaves agree with the predicted depth (``depth_agrees``): depth maps each
off by a factor or a shift of their own cannot all be met by one set of cameras, and show it."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine.cameras import CameraSet
from vggt_sparse_ns.refine.consistency import DEPTH_AGREEMENT, agreeing_depth_scale, model_pixels
from vggt_sparse_ns.refine.track_selection import frame_choices
from vggt_sparse_ns.refine.triangulation import SparseModel

AFFORDABLE_DEPTH_COSTS = 50_000
"""Depth costs one adjustment holds whatever its frame count (each frame then at least ``points_per_frame``): about
0.3 s per evaluation of the Python costs on one thread. A few hundred frames keep every usable observation (12 views
turning outward, depth from the truth: positions 54-110x better than predicted, against 25-38x with 50 per frame);
1,000 frames keep 50 each."""


@dataclass(frozen=True)
class DepthPrior:
    """Predicted depth in the adjustment's world, and how loosely a point's depth is held to it."""

    reconstruction: Reconstruction
    """The prediction: its per-frame depth maps (model pixels) and image transforms."""
    width: float
    """One standard deviation, relative to the depth (0.05: 5 %)."""
    points_per_frame: int
    """Observations per frame held to their predicted depth at the least (``held``): more where the frames are few,
    up to ``AFFORDABLE_DEPTH_COSTS`` in all."""

    def held(
        self, model: SparseModel, observed: np.ndarray, cameras: CameraSet
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which of the ``observed`` observations of ``model`` (indices) are held to their predicted depth, their
        targets and weights: of those with a usable depth (``targets``), at most ``points_per_frame`` per frame
        (or an equal share of ``AFFORDABLE_DEPTH_COSTS``, where larger),
        spread over the image with longer tracks and lower reprojection errors in ``cameras`` first
        (``frame_choices``, as the adjustment's points are chosen). Each is one Python cost in the adjustment, so
        their number grows with the frames, not with the observations. Each weighs its frame's usable observations
        per held one, so that a frame's prior pulls as hard as if all of them were held: unweighted, 50 per frame
        left 12 views turning outward (seed 1) with positions 2.2x better than predicted instead of 110x."""
        targets, usable = self.targets(model.frame[observed], model.pixel[observed])
        observed, targets = observed[usable], targets[usable]
        candidates = SparseModel(
            model.xyz, model.point[observed], model.frame[observed], model.keypoint[observed], model.pixel[observed]
        )
        share = AFFORDABLE_DEPTH_COSTS // max(1, len(np.unique(candidates.frame)))
        chosen = frame_choices(candidates, candidates.errors(cameras), max(self.points_per_frame, share))
        usable_per_frame = np.bincount(candidates.frame)
        held_per_frame = np.bincount(candidates.frame[chosen], minlength=len(usable_per_frame))
        weights = (usable_per_frame / np.maximum(held_per_frame, 1))[candidates.frame[chosen]]
        return observed[chosen], targets[chosen], weights

    def targets(self, frames: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predicted depth at full-resolution ``pixels`` of ``frames`` (bilinear at model
        resolution), and where it is usable: inside the map, positive at all four neighbours and no depth edge
        between them (neighbours within ``width`` of each other)."""
        depth = self.reconstruction.depth
        height, width = depth.shape[1:3]
        # Model pixel (i, j) covers [i, i + 1) x [j, j + 1): its value sits at its centre.
        xy = model_pixels(self.reconstruction.transforms, frames, pixels) - 0.5
        left, top = np.floor(xy[:, 0]).astype(np.int64), np.floor(xy[:, 1]).astype(np.int64)
        inside = (left >= 0) & (left + 1 < width) & (top >= 0) & (top + 1 < height)
        left, top = left.clip(0, width - 2), top.clip(0, height - 2)
        fx, fy = xy[:, 0] - left, xy[:, 1] - top
        corners = np.stack(
            [depth[frames, top + dy, left + dx].astype(np.float64) for dy in (0, 1) for dx in (0, 1)], axis=1
        )
        weights = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=1)
        smallest, largest = corners.min(1), corners.max(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            smooth = largest <= smallest * (1 + self.width)
        usable = inside & (smallest > 0) & np.isfinite(largest) & smooth
        return np.sum(corners * weights, axis=1), usable


def depth_prior(reconstruction: Reconstruction, width: float, points_per_frame: int) -> DepthPrior | None:
    """The depth prior for an adjustment in VGGT's world (its scale held by the pose prior or by this one), or
    None where ``width`` is 0 or the reconstruction has no positive depth."""
    if width <= 0 or not np.any(reconstruction.depth > 0):
        return None
    return DepthPrior(reconstruction, width, points_per_frame)


def depth_agrees(reconstruction: Reconstruction, cameras: CameraSet, model: SparseModel, frames: np.ndarray) -> bool:
    """Whether the predicted depth agrees with ``model``'s points in ``cameras``, in one factor over all frames
    (``agreeing_depth_scale``) and that factor VGGT's own (within the same ``DEPTH_AGREEMENT`` in log terms)."""
    scale = agreeing_depth_scale(reconstruction, cameras, model, frames)
    return scale is not None and abs(np.log(scale)) < DEPTH_AGREEMENT


@functools.cache
def depth_cost_class() -> type:
    """The prior's cost function (a pyceres cost written in Python), defined on first use so that importing this
    module does not load pyceres."""
    import pyceres

    class PointDepthPrior(pyceres.CostFunction):
        """Residual (z - target) / (width * target), z the point's depth in the frame: parameter blocks the point
        (x, y, z) and the frame's pose (quaternion x, y, z, w; translation), as pycolmap stores them."""

        def __init__(self, target: float, width: float) -> None:
            super().__init__()
            self.set_num_residuals(1)
            self.set_parameter_block_sizes([3, 7])
            self.target, self.unit = target, width * target

        def Evaluate(self, parameters, residuals, jacobians) -> bool:  # noqa: N802 (pyceres' name)
            px, py, pz = parameters[0].tolist()
            qx, qy, qz, qw, _, _, tz = parameters[1].tolist()
            # The third row of the (unit) quaternion's rotation matrix.
            r0, r1, r2 = 2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)
            residuals[0] = (r0 * px + r1 * py + r2 * pz + tz - self.target) / self.unit
            if jacobians is not None:
                unit = self.unit
                if jacobians[0] is not None:
                    jacobians[0][:] = (r0 / unit, r1 / unit, r2 / unit)
                if jacobians[1] is not None:
                    jacobians[1][:] = (
                        2 * (qz * px + qw * py - 2 * qx * pz) / unit,
                        2 * (-qw * px + qz * py - 2 * qy * pz) / unit,
                        2 * (qx * px + qy * py) / unit,
                        2 * (-qy * px + qx * py) / unit,
                        0.0,
                        0.0,
                        1 / unit,
                    )
            return True

    return PointDepthPrior
