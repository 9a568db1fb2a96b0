"""The refinement entry: features -> pairs -> matches -> verified tracks -> triangulation from the predicted
cameras -> bundle adjustment, filtering, re-triangulation, a second adjustment -> a new Reconstruction."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from vggt_sparse_ns.pipeline.reconstruction import Reconstruction, SparsePoints
from vggt_sparse_ns.refine.adjustment import PosePrior, RefinementRejected, bundle_adjust, solver_device
from vggt_sparse_ns.refine.cameras import CameraSet, project_points
from vggt_sparse_ns.refine.config import RefineConfig
from vggt_sparse_ns.refine.consistency import (
    align_depth,
    back_to_prediction,
    point_colours,
    to_model_pixels,
    transform_world,
)
from vggt_sparse_ns.refine.depth_prior import depth_agrees, depth_prior
from vggt_sparse_ns.refine.features import extract_features, feature_extractor
from vggt_sparse_ns.refine.matching import match_pairs
from vggt_sparse_ns.refine.pairs import select_pairs
from vggt_sparse_ns.refine.registration import register_frames
from vggt_sparse_ns.refine.track_selection import adjustment_tracks
from vggt_sparse_ns.refine.triangulation import SparseModel, triangulate
from vggt_sparse_ns.refine.verification import build_tracks, keypoint_pixels, verify_pairs
from vggt_sparse_ns.timing import StageTimer

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

INITIAL_ERROR_DEGREES = 5.0
"""Before any adjustment the predicted cameras may be off by a few degrees: observations within this angle of
their point's projection are kept for the first adjustment (as pixels: focal length * tan(angle))."""
FIRST_PASS_LOSS_DEGREES = 1.0
"""The first adjustment's robust loss scale, as an angle (the second uses one pixel)."""
MAX_REFINEMENTS = 3
"""Most further adjustment passes after the second (each: adjust, then re-triangulate every track). An adjustment
under a robust loss can stop in a local minimum that fresh points (and the tracks they bring back) lead out of:
measured on 16 views turning outward in a room, seed 1, the second pass kept 7,452 of the 8,519 observations the
truth explains, rotations 1.59 degrees off (1.2x better than predicted); three more passes brought back 8,517
of them at 0.43 degrees (4.5x). COLMAP's global bundle adjustment repeats in the same way."""
DEPTH_ERROR_RISE = 1.02
"""Passes with the depth prior are kept only if their mean reprojection error is at most this factor above the
passes' without it: the prior is meant to fix what the images leave open, which moves no pixel; depth that
disagrees with the images bends the cameras and points off their rays instead. Measured on generated scenes (12 and
16 views turning outward, a box ring, a corridor, an aerial grid; seeds 1-3): depth rendered from the truth -0.5 to
+1.4 %; with smooth 5 % noise +3.9 to +38 % (kept at +3.9 % and +7.3 %, the corridor's and aerial grid's rotations
came out 2-4x worse than without depth); each frame's depth scaled by 0.7-1.4 and shifted by up to 30 %: +17 % to
11-fold."""
MAX_TURN_DEGREES = 15.0
"""A frame whose adjusted rotation ends further than this from VGGT's, while the observations that fit it did not
at least double (as many fit a far-off camera as fitted the predicted one), is held out and the passes run again
without it: it keeps its predicted camera. Its matches held two accounts of it, and the one far from VGGT's is
repeated structure: the same photograph on two boxes of a table, seen from opposite sides, matched and verified
as one (20 views circling it, seed 5: three frames ended 22-51 degrees off, with about as many observations
fitting them as before, where they had been predicted 1.5-2.4 degrees off). A frame VGGT got that far off fits
few observations at its prediction and many once turned (a drone's frame predicted 20 degrees off: 23-30, then
300-304), or joins by absolute pose when too few fit."""
DEPTH_OBSERVATIONS_LOST = 0.01
"""Passes with the depth prior are kept only if at most this fraction fewer observations fit them: depth that
disagrees with the images leaves points off their rays (12 views turning outward, each frame's depth scaled by
0.7-1.4 and shifted: 4,852 -> 3,640 observations), while right depth moves a few across the outlier threshold
(20 views circling a table, depth from the truth: 7,083 -> 7,066 and 6,939 -> 6,937, each discarded when none
could be lost)."""
SETTLED_PIXELS = 0.1
"""The passes stop once a pass moves no frame's median observation (its point projected by the camera before and
after the pass) by more than this many pixels. A frame's median, not the largest over all observations: a camera that
moves shifts all its observations, while one point close to a camera or nearly at infinity can shift by pixels from a
change that moves nothing else. Measured on 200 generated views circling a plane: a pass whose largest shift was
12.8 px moved 99 % of the observations by under 0.1 px, and the two passes after it (0.11 px, then 0 px largest)
gave the same cameras and cost again, 15 s of 55 s of the adjustment stage."""


@contextmanager
def _quiet_pycolmap() -> Iterator[None]:
    """pycolmap's (glog's) information lines off while refining; warnings and errors still show."""
    import pycolmap

    level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = max(level, 1)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = level


def _observations_per_frame(model: SparseModel, frames: int) -> np.ndarray:
    return np.bincount(model.frame, minlength=frames)


def refine(reconstruction: Reconstruction, config: RefineConfig | None = None) -> Reconstruction:
    """Refine the predicted cameras against the images: a new Reconstruction, never a worse one.

    Args:
        reconstruction: VGGT's prediction; its image files are read again at full resolution. Depth is
            realigned to the refined cameras but not required.
        config: the refinement's settings (defaults when None).

    Returns:
        A copy with refined ``T_camera_world`` and ``intrinsics`` (model pixels, frame 0 still the world, VGGT's
        scale), ``distortion`` for a distortion model, depth (and point maps) rescaled per frame to agree with
        the triangulated points, ``sparse_points`` and the ``refinement`` summary. Frames with too few verified
        observations keep their predicted camera (``refinement["kept_frames"]``); when the adjustment fails or
        does not lower the reprojection error, every frame keeps it, with one warning.

    Example:
        >>> refined = refine(reconstruction, RefineConfig(refine_camera_model="SIMPLE_RADIAL"))
        >>> refined.refinement["reprojection_error_px"]
    """
    with _quiet_pycolmap():
        return _refine(reconstruction, config or RefineConfig())


def _refine(reconstruction: Reconstruction, config: RefineConfig) -> Reconstruction:
    timer = StageTimer()
    count = reconstruction.num_frames
    predicted = CameraSet(
        reconstruction.T_camera_world.astype(np.float64),
        np.stack(
            [
                t.intrinsics_to_original(k)
                for t, k in zip(reconstruction.transforms, reconstruction.intrinsics, strict=True)
            ]
        ),
        np.zeros((count, 4)) if reconstruction.distortion is None else reconstruction.distortion.astype(np.float64),
    )
    device, arrays = config.device(), config.array_device()
    extractor = feature_extractor(config.refine_features, device, config.refine_affine_features)
    with timer.stage("features"):
        features = extract_features(
            reconstruction.image_paths,
            max_image_size=config.refine_max_image_size,
            max_features=config.refine_max_features,
            affine_shape=config.refine_affine_features,
            extractor=extractor,
            device=device,
        )
    with timer.stage("pairs"):
        pairs = select_pairs(
            features,
            reconstruction.graph_edges,
            neighbors=config.refine_neighbors,
            sequential=config.refine_sequential_neighbors,
            device=device,
        )
    with timer.stage("matching"):
        matches = match_pairs(features, pairs, ratio=config.refine_ratio, device=device)
    with timer.stage("verification"):
        verified = verify_pairs(
            features,
            pairs,
            matches,
            max_error=config.refine_max_reprojection_error,
            min_inliers=config.refine_min_inliers,
        )
    with timer.stage("triangulation"):
        track, frame, keypoint = build_tracks([len(f) for f in features], pairs, verified)
        pixel = keypoint_pixels(features, frame, keypoint)
        loose = float(np.median(predicted.intrinsics[:, 0, 0])) * np.tan(np.deg2rad(INITIAL_ERROR_DEGREES))
        initial = triangulate(
            predicted,
            track,
            frame,
            keypoint,
            pixel,
            max_error=loose,
            min_angle=config.refine_min_triangulation_angle,
            device=arrays,
        )
    error_before = float(initial.errors(predicted).mean()) if len(initial.point) else None
    summary = {
        "camera_model": config.refine_camera_model,
        "feature_extractor": extractor,
        "pairs_matched": int(len(pairs)),
        "pairs_verified": int(sum(len(v) > 0 for v in verified)),
        "reprojection_error_px_before": error_before,
        "tracks": int(track.max() + 1) if len(track) else 0,
    }
    solver = solver_device(config.refine_solver, device, count, config.refine_camera_model)
    summary["bundle_adjuster"] = "ceres (cpu)" if solver is None else f"torch ({solver.type})"
    try:
        with timer.stage("bundle adjustment"):
            cameras, model, frames, anchor, depth_held = _adjust(
                reconstruction, predicted, initial, (track, frame, keypoint, pixel), config, solver
            )
            summary["depth_prior"] = depth_held
        with timer.stage("scale"):
            similarity = back_to_prediction(reconstruction, predicted, cameras, model, frames, anchor)
            summary["scale_source"] = similarity.scale_source
            if not (np.isfinite(similarity.scale) and similarity.scale > 0):
                raise RefinementRejected(f"VGGT's scale could not be restored (factor {similarity.scale:.3g})")
            if similarity.scales_disagree:
                raise RefinementRejected(
                    f"the adjusted cameras are not a refinement of the prediction: VGGT's depth gives them scale "
                    f"{similarity.scale:.3g}, its camera positions {similarity.centre_scale:.3g}"
                )
            cameras, model = transform_world(cameras, model, frames, similarity)
        error_after = float(model.errors(cameras).mean())
        if not error_after < error_before:  # (no points before: _adjust has rejected already)
            raise RefinementRejected(
                f"the adjustment did not lower the mean reprojection error ({error_before:.2f} px before, "
                f"{error_after:.2f} px after)"
            )
    except (RuntimeError, ValueError, np.linalg.LinAlgError) as error:
        # RefinementRejected says why; anything else numerical (pycolmap, numpy) must not crash the run either.
        reason = error if isinstance(error, RefinementRejected) else f"{type(error).__name__}: {error}"
        logger.warning("Refinement kept the predicted cameras: %s.", reason)
        cameras, frames = predicted, np.zeros(0, dtype=np.int64)
        # The points that agree with the predicted cameras are still worth exporting.
        model = initial.select(initial.errors(predicted) <= config.refine_max_reprojection_error)
        summary["fallback"] = str(reason)
    kept = sorted(set(range(count)) - set(frames.tolist()))
    errors = model.errors(cameras) if len(model.point) else np.zeros(0)
    with timer.stage("depth alignment"):
        depth, world_points, depth_scales, depth_shifts = align_depth(reconstruction, predicted, cameras, model)
    summary.update(
        {
            "reprojection_error_px": float(errors.mean()) if len(errors) else None,
            "registered_frames": int(len(frames)),
            "kept_frames": kept,
            "points": int(len(model.xyz)),
            "observations": int(len(model.point)),
            "depth_scale_median": float(np.median(depth_scales)),
            "depth_shifted_frames": int(np.count_nonzero(depth_shifts)),
            "seconds": timer.seconds(),
        }
    )
    distortion = cameras.distortion if np.any(cameras.distortion) else reconstruction.distortion
    T_camera_world = cameras.T_camera_world.astype(np.float32)
    intrinsics = to_model_pixels(cameras.intrinsics, reconstruction.transforms).astype(np.float32)
    T_camera_world[kept] = reconstruction.T_camera_world[kept]  # exactly as predicted, no round trip
    intrinsics[kept] = reconstruction.intrinsics[kept]
    sparse = SparsePoints(
        xyz=model.xyz,
        rgb=point_colours(reconstruction, model),
        camera_model=_camera_model(config, summary, distortion),
        point=model.point,
        frame=model.frame,
        pixel=model.pixel,
    )
    return dataclasses.replace(
        reconstruction,
        T_camera_world=T_camera_world,
        intrinsics=intrinsics,
        distortion=distortion,
        depth=depth,
        world_points=world_points,
        sparse_points=sparse,
        refinement=summary,
    )


def _camera_model(config: RefineConfig, summary: dict, distortion: np.ndarray | None) -> str:
    """The model the returned cameras are in: the chosen one, or the prediction's when it was kept."""
    if "fallback" not in summary:
        return config.refine_camera_model
    return "PINHOLE" if distortion is None else "OPENCV"


def _adjust(
    reconstruction: Reconstruction,
    predicted: CameraSet,
    initial: SparseModel,
    observations: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    config: RefineConfig,
    solver: torch.device | None,
) -> tuple[CameraSet, SparseModel, np.ndarray, int, bool]:
    """Two adjustment passes on each frame's best points, every track re-triangulated after each, frames left
    out at first registered by absolute pose in between, then more passes until the cameras settle; then the
    same passes again with the predicted depth as a prior, kept where they fit the images as well and leave
    points that agree with that depth (``_depth_kept``). ``solver``: ``bundle_adjust``'s device (None: Ceres).
    Returns the cameras, all points triangulated with the final cameras, the adjusted frames, the anchor frame and
    whether the depth prior was kept."""
    track, frame, keypoint, pixel = observations
    arrays = config.array_device()
    sizes = [t.original_size for t in reconstruction.transforms]
    count = len(predicted.T_camera_world)
    frames = _enough(initial, count, config.refine_min_observations)
    if len(frames) < 2:
        raise RefinementRejected(
            f"{len(frames)} frame(s) have {config.refine_min_observations} or more verified observations"
        )
    anchor = 0 if 0 in frames else int(frames[np.argmax(_observations_per_frame(initial, count)[frames])])
    focal = float(np.median(predicted.intrinsics[:, 0, 0]))
    settings = {
        "anchor": anchor,
        "sizes": sizes,
        "camera_model": config.refine_camera_model,
        "shared_intrinsics": config.refine_shared_intrinsics,
        "prior": _pose_prior(predicted, initial, frames, config),
        "device": solver,
    }

    def triangulate_frames(cameras: CameraSet, frames: np.ndarray) -> SparseModel:
        registered = np.isin(frame, frames)
        return triangulate(
            cameras,
            track[registered],
            frame[registered],
            keypoint[registered],
            pixel[registered],
            max_error=config.refine_max_reprojection_error,
            min_angle=config.refine_min_triangulation_angle,
            device=arrays,
        )

    def adjust_and_retriangulate(
        cameras: CameraSet, model: SparseModel, frames: np.ndarray, loss_scale: float
    ) -> tuple[CameraSet, SparseModel, np.ndarray]:
        problem = adjustment_tracks(model, model.errors(cameras, arrays), config.refine_points_per_frame, arrays)
        cameras, _ = bundle_adjust(cameras, problem, frames=frames, loss_scale=loss_scale, **settings)
        model = triangulate_frames(cameras, frames)
        frames = _enough(model, count, config.refine_min_observations, among=frames)
        if anchor not in frames or len(frames) < 2:
            raise RefinementRejected("too few frames kept enough observations after an adjustment")
        return predicted.with_frames(frames, cameras), model, frames

    def settle(cameras: CameraSet, model: SparseModel, frames: np.ndarray) -> tuple[CameraSet, SparseModel, np.ndarray]:
        for _ in range(MAX_REFINEMENTS):
            try:
                refined = adjust_and_retriangulate(cameras, model, frames, 1.0)
            except RefinementRejected:
                break  # this pass lost frames: the previous one stands
            if len(refined[1].point) < len(model.point):
                break  # fewer observations fit it: a worse account of the images than the previous pass
            settled = _frame_shift(cameras, refined[0], refined[1], arrays) <= SETTLED_PIXELS
            cameras, model, frames = refined
            if settled:
                break
        return cameras, model, frames

    first_loss = focal * np.tan(np.deg2rad(FIRST_PASS_LOSS_DEGREES))

    def passes(frames: np.ndarray, held_out: np.ndarray) -> tuple[CameraSet, SparseModel, np.ndarray]:
        cameras, model, frames = adjust_and_retriangulate(predicted, initial, frames, first_loss)
        # Frames VGGT got badly wrong (too few observations fit their predicted camera) may rejoin here.
        cameras, joined = register_frames(
            cameras,
            model,
            (track, frame, keypoint, pixel),
            sorted(set(range(count)) - set(frames.tolist()) - set(held_out.tolist())),
            sizes,
            predicted=predicted,
            min_inliers=config.refine_min_observations,
            max_error=config.refine_max_reprojection_error,
        )
        if joined:
            frames = np.union1d(frames, joined).astype(np.int64)
            model = triangulate_frames(cameras, frames)
        return settle(*adjust_and_retriangulate(cameras, model, frames, 1.0))

    cameras, model, adjusted = passes(frames, np.zeros(0, np.int64))
    strayed = _strayed(predicted, initial, cameras, model, adjusted)
    if len(strayed):
        logger.debug("frames %s ended more than %s degrees from VGGT's", strayed.tolist(), MAX_TURN_DEGREES)
        cameras, model, adjusted = passes(np.setdiff1d(frames, strayed), strayed)
    frames = adjusted
    # Then the same passes with the predicted depth held, kept only where the points they leave agree with it.
    settings["depth_prior"] = depth_prior(
        reconstruction, config.refine_prior_depth, config.refine_depth_points_per_frame, arrays
    )
    held = False
    if settings["depth_prior"] is not None:
        try:
            trial = settle(*adjust_and_retriangulate(cameras, model, frames, 1.0))
        except RefinementRejected:
            trial = None
        if trial is not None and _depth_kept(reconstruction, (cameras, model, frames), trial):
            (cameras, model, frames), held = trial, True
    model = model.select(np.isin(model.frame, frames))
    return cameras, model, frames, anchor, held


def _depth_kept(
    reconstruction: Reconstruction,
    without: tuple[CameraSet, SparseModel, np.ndarray],
    trial: tuple[CameraSet, SparseModel, np.ndarray],
) -> bool:
    """Whether the passes with the depth prior (``trial``) stand: as many observations fit (but for
    ``DEPTH_OBSERVATIONS_LOST``), the mean reprojection
    error rose by at most ``DEPTH_ERROR_RISE`` (what the images leave open moves no pixel), and the predicted depth
    agrees with the points they leave."""
    error, trial_error = without[1].errors(without[0]).mean(), trial[1].errors(trial[0]).mean()
    logger.debug(
        "depth prior: %d -> %d observations, mean error %.3f -> %.3f px",
        len(without[1].point),
        len(trial[1].point),
        error,
        trial_error,
    )
    return (
        len(trial[1].point) >= (1 - DEPTH_OBSERVATIONS_LOST) * len(without[1].point)
        and trial_error <= DEPTH_ERROR_RISE * error
        and depth_agrees(reconstruction, *trial)
    )


def _strayed(
    predicted: CameraSet, initial: SparseModel, adjusted: CameraSet, model: SparseModel, frames: np.ndarray
) -> np.ndarray:
    """The ``frames`` adjusted more than ``MAX_TURN_DEGREES`` from their predicted rotation without the
    observations that fit them at least doubling (``initial``: those that fit the predicted cameras, ``model``:
    the adjusted ones)."""
    count = len(predicted.T_camera_world)
    before = np.bincount(initial.frame, minlength=count)[frames]
    after = np.bincount(model.frame, minlength=count)[frames]
    return frames[adjusted.turned(predicted, frames, MAX_TURN_DEGREES) & (after < 2 * before)]


def _frame_shift(before: CameraSet, after: CameraSet, model: SparseModel, device: torch.device) -> float:
    """The most any frame's median observation of ``model`` moves (pixels) when its point is projected by
    ``after`` instead of ``before``; computed on ``device`` (float64)."""
    import torch

    if len(model.point) == 0:
        return 0.0
    frame = torch.as_tensor(model.frame, device=device)
    points = torch.as_tensor(model.xyz, device=device)[torch.as_tensor(model.point, device=device)]
    moved = (
        project_points(after.to_tensors(device), frame, points)[0]
        - project_points(before.to_tensors(device), frame, points)[0]
    )
    shift = torch.linalg.norm(moved, dim=1).nan_to_num(nan=float("inf"))
    # Each frame's shifts in order, then the middle one (or the mean of the middle two) of each: numpy's median.
    shift, order = torch.sort(shift)
    frame, by_frame = torch.sort(frame[order], stable=True)
    shift = shift[by_frame]
    counts = torch.bincount(frame)
    seen = counts > 0
    starts = (torch.cumsum(counts, 0) - counts)[seen]
    counts = counts[seen]
    medians = (shift[starts + (counts - 1) // 2] + shift[starts + counts // 2]) / 2
    return float(medians.max())


def _pose_prior(
    predicted: CameraSet, initial: SparseModel, frames: np.ndarray, config: RefineConfig
) -> PosePrior | None:
    """The predictions of the frames that fit their first triangulation, as a prior; positions in units of the
    median depth of the points in the predicted cameras (VGGT's world has no unit of its own). None when every
    part of it is off."""
    if (
        config.refine_prior_rotation_degrees == 0 or config.refine_prior_position == 0
    ) and not config.refine_prior_focal:
        return None
    _, depth = project_points(predicted, initial.frame, initial.xyz[initial.point])
    scene_depth = float(np.median(depth[depth > 0])) if np.any(depth > 0) else 1.0
    return PosePrior(
        predicted,
        frames,
        rotation_sigma=float(np.deg2rad(config.refine_prior_rotation_degrees)),
        position_sigma=config.refine_prior_position * scene_depth,
        focal_sigma=config.refine_prior_focal,
    )


def _enough(model: SparseModel, count: int, minimum: int, among: np.ndarray | None = None) -> np.ndarray:
    """Frames (among ``among``) with at least ``minimum`` observations."""
    enough = np.flatnonzero(_observations_per_frame(model, count) >= minimum)
    return enough if among is None else np.intersect1d(enough, among)
