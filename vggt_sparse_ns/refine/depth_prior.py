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

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine.cameras import CameraSet
from vggt_sparse_ns.refine.consistency import DEPTH_AGREEMENT, agreeing_depth_scale, model_pixels
from vggt_sparse_ns.refine.track_selection import frame_choices
from vggt_sparse_ns.refine.triangulation import SparseModel

if TYPE_CHECKING:
    import torch

AFFORDABLE_DEPTH_COSTS = 50_000
"""Depth costs one adjustment holds whatever its frame count (each frame then at least ``points_per_frame``). Each
adds two residuals to the solve, as an observation does: on 100 generated 640x360 views (2 cores), 50,000 of them
beside 173,000 reprojection residuals made the trial's two passes 4.6 + 6.5 s against 6.8 + 6.7 s with all 86,000
usable ones, and 3.4-4.1 s per pass without the prior. A few hundred frames keep every usable observation (12 views
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
    device: torch.device | None = None
    """Where ``held`` sorts the observations (``frame_choices``; the CPU when None)."""

    def held(
        self, model: SparseModel, observed: np.ndarray, cameras: CameraSet
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which of the ``observed`` observations of ``model`` (indices) are held to their predicted depth, their
        targets and weights: of those with a usable depth (``targets``), at most ``points_per_frame`` per frame
        (or an equal share of ``AFFORDABLE_DEPTH_COSTS``, where larger),
        spread over the image with longer tracks and lower reprojection errors in ``cameras`` first
        (``frame_choices``, as the adjustment's points are chosen), so that their number grows with the frames, not
        with the observations. Each weighs its frame's usable observations
        per held one, so that a frame's prior pulls as hard as if all of them were held: unweighted, 50 per frame
        left 12 views turning outward (seed 1) with positions 2.2x better than predicted instead of 110x."""
        targets, usable = self.targets(model.frame[observed], model.pixel[observed])
        observed, targets = observed[usable], targets[usable]
        candidates = SparseModel(
            model.xyz, model.point[observed], model.frame[observed], model.keypoint[observed], model.pixel[observed]
        )
        usable_per_frame = np.bincount(candidates.frame)
        share = AFFORDABLE_DEPTH_COSTS // max(1, np.count_nonzero(usable_per_frame))
        chosen = frame_choices(
            candidates, candidates.errors(cameras, self.device), max(self.points_per_frame, share), device=self.device
        )
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


def depth_prior(
    reconstruction: Reconstruction, width: float, points_per_frame: int, device: torch.device | None = None
) -> DepthPrior | None:
    """The depth prior for an adjustment in VGGT's world (its scale held by the pose prior or by this one), or
    None where ``width`` is 0 or the reconstruction has no positive depth."""
    if width <= 0 or not np.any(reconstruction.depth > 0):
        return None
    return DepthPrior(reconstruction, width, points_per_frame, device)


def depth_agrees(reconstruction: Reconstruction, cameras: CameraSet, model: SparseModel, frames: np.ndarray) -> bool:
    """Whether the predicted depth agrees with ``model``'s points in ``cameras``, in one factor over all frames
    (``agreeing_depth_scale``) and that factor VGGT's own (within the same ``DEPTH_AGREEMENT`` in log terms)."""
    scale = agreeing_depth_scale(reconstruction, cameras, model, frames)
    return scale is not None and abs(np.log(scale)) < DEPTH_AGREEMENT


def depth_cost(point_in_frame: np.ndarray, target: float, width: float) -> object:
    """The cost holding a point's depth in a frame to ``target`` with a standard deviation of ``width`` times it, on
    the parameter blocks (point xyz, the frame's pose, ``virtual_camera()``): pycolmap's compiled reprojection error
    (a rig's, with a constant camera-from-rig pose), so that Ceres evaluates it on all its threads.

    The frame gets a second, virtual camera ``b = target / width`` to its right (same orientation, focal length 1,
    principal point 0). A point at (x, y, z) in the frame projects there to ((x - b) / z, y / z); it is observed at
    (x0 / z0 - b / target, y0 / z0), (x0, y0, z0) the point in ``point_in_frame`` (where the adjustment starts).
    The first residual is then (x / z - x0 / z0) + (z - target) / (width z): the depth error in widths, as in a
    stereo pair whose disparity is the inverse depth, plus the bearing's change in focal-length units, a thousandth
    of a pixel's reprojection error, which the frame's own observation holds. The second is y / z - y0 / z0.

    A cost written in Python would hold the GIL: Ceres' threads then take turns at it, slower than one thread alone
    (20,000 such costs: 0.28 s per evaluation on one thread, 1.1-2.0 s on two)."""
    import pycolmap
    from pycolmap import cost_functions

    baseline = target / width
    x, y, z = point_in_frame.tolist()
    observed = np.array([x / z - baseline / target, y / z])
    virtual_from_frame = pycolmap.Rigid3d(pycolmap.Rotation3d(), np.array([-baseline, 0.0, 0.0]))  # identity rotation
    return cost_functions.RigReprojErrorCost(pycolmap.CameraModelId.SIMPLE_PINHOLE, observed, virtual_from_frame)


def virtual_camera() -> np.ndarray:
    """The parameter block of the depth costs' virtual camera (SIMPLE_PINHOLE: focal length 1, principal point 0),
    to be added to the problem as a constant and kept alive until it is solved."""
    return np.array([1.0, 0.0, 0.0])
