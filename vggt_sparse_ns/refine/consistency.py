"""Keeping the refined reconstruction self-consistent: VGGT's scale, depth maps that agree with the
triangulated points, intrinsics back in model pixels, point colours."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine.cameras import CameraSet, project_points
from vggt_sparse_ns.refine.triangulation import SparseModel

MIN_DEPTH_SAMPLES = 10
"""Fewest observations with a predicted depth for a frame's depth map to be rescaled."""
MIN_SHIFT_SAMPLES = 50
"""Fewest observations with a predicted depth for a frame's depth map to be given a shift as well."""
SHIFT_GAIN = 0.5
"""A shift is used only where it at least halves the median relative depth error left by the scale alone (VGGT's
depth shares its cameras' scale, so most frames need none; a shift that explains little would only fit noise)."""
MIN_SCALE_SAMPLES = 100
"""Fewest observations with a predicted depth for the scale to be measured on depth."""
DEPTH_AGREEMENT = 0.1
"""Largest median absolute deviation of log(predicted depth / triangulated depth), over all observations and
between frames, for depth to set the scale."""
MAX_SCALE_DISAGREEMENT = 2.0
"""Largest factor between the scale measured on depth and the one fitted to the camera centres. VGGT's depth and
cameras share one scale, and the centres are off by a few % of the scene, so the two agree far better in a
refinement; a larger factor says the adjustment found another world (measured: a ring of 8 views around a box
collapsed to depth scale 0.065 against centre scale 1.02, rotations 48 degrees off)."""


@dataclass(frozen=True)
class Similarity:
    """x_prediction = scale * rotation @ x_refined + translation: the refined world put back into VGGT's."""

    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    scale_source: str
    centre_scale: float
    """The scale fitted to the camera centres (the scale itself unless depth set it)."""

    @property
    def scales_disagree(self) -> bool:
        """Depth and camera centres give scales more than ``MAX_SCALE_DISAGREEMENT`` apart."""
        ratio = self.scale / self.centre_scale if self.centre_scale > 0 else np.inf
        return not 1 / MAX_SCALE_DISAGREEMENT <= ratio <= MAX_SCALE_DISAGREEMENT


def back_to_prediction(
    reconstruction: Reconstruction,
    predicted: CameraSet,
    refined: CameraSet,
    model: SparseModel,
    frames: np.ndarray,
    anchor: int,
) -> Similarity:
    """The similarity that gives the refined world VGGT's frame and scale again (the adjustment fixed only the
    anchor's pose, and a scale of its own).

    Frame 0 as anchor is the world itself: no rotation, no translation. Another anchor (frame 0 could not be
    adjusted) is one noisy prediction, so the rotation is the mean of all adjusted frames' rotation offsets and
    the translation fits their centres. The scale: VGGT's depth maps and cameras share one; where the predicted
    depth agrees with the triangulated points up to one factor (log-ratio's median absolute deviation under
    ``DEPTH_AGREEMENT``, at least ``MIN_SCALE_SAMPLES`` observations) it is that ratio's median, from thousands
    of samples; otherwise the least-squares fit of the camera centres (few samples, as noisy as the predicted
    positions).
    """
    if anchor == 0:
        rotation = np.eye(3)
    else:
        offsets = np.einsum(
            "sji,sjk->ik", predicted.T_camera_world[frames, :, :3], refined.T_camera_world[frames, :, :3]
        )
        u, _, vt = np.linalg.svd(offsets)
        rotation = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    origin_before = predicted.centres[anchor] if anchor == 0 else predicted.centres[frames].mean(0)
    origin_after = refined.centres[anchor] if anchor == 0 else refined.centres[frames].mean(0)
    before = predicted.centres[frames] - origin_before
    after = (refined.centres[frames] - origin_after) @ rotation.T
    spread = float(np.sum(after * after))
    centre_scale = float(np.sum(after * before) / spread) if spread > 0 else 1.0
    scale, source = agreeing_depth_scale(reconstruction, refined, model, frames), "depth"
    if scale is None:
        scale, source = centre_scale, "camera centres"
    return Similarity(rotation, origin_before - scale * rotation @ origin_after, scale, source, centre_scale)


def agreeing_depth_scale(
    reconstruction: Reconstruction, refined: CameraSet, model: SparseModel, frames: np.ndarray
) -> float | None:
    """The median of predicted over triangulated depth where they agree up to one factor, else None.

    One factor for the whole scene: the log-ratios' median absolute deviation is under ``DEPTH_AGREEMENT`` both
    over all observations and between the frames' own medians (frames with ``MIN_DEPTH_SAMPLES`` or more). Pooled
    alone, depth maps each off by its own factor can look like one: measured, eight frames whose depth ratios
    ranged 0.51-1.57 pooled to a deviation of 0.089 and a scale 9 % off."""
    frame, predicted_depth, z = _depth_pairs(reconstruction, refined, model, frames)
    if len(z) < MIN_SCALE_SAMPLES:
        return None
    logs = np.log(predicted_depth / z)
    per_frame = np.array([np.median(logs[chosen]) for _, chosen in _frame_groups(frame, MIN_DEPTH_SAMPLES)])
    for values in (logs, per_frame):
        if len(values) and _median_deviation(values) >= DEPTH_AGREEMENT:
            return None
    return float(np.exp(np.median(logs)))


def _median_deviation(values: np.ndarray) -> float:
    return float(np.median(np.abs(values - np.median(values))))


def _frame_groups(frame: np.ndarray, minimum: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame, indices of its observations) for each frame with at least ``minimum`` observations: one sort, not
    a scan of every observation per frame."""
    order = np.argsort(frame, kind="stable")
    frames, starts, counts = np.unique(frame[order], return_index=True, return_counts=True)
    for index, start, samples in zip(frames, starts, counts, strict=True):
        if samples >= minimum:
            yield int(index), order[start : start + samples]


def transform_world(
    cameras: CameraSet, model: SparseModel, frames: np.ndarray, similarity: Similarity
) -> tuple[CameraSet, SparseModel]:
    """``frames``' cameras and the points moved by ``similarity`` (every reprojection is unchanged)."""
    rotation = cameras.T_camera_world[frames, :, :3] @ similarity.rotation.T
    centres = similarity.scale * cameras.centres[frames] @ similarity.rotation.T + similarity.translation
    T_camera_world = cameras.T_camera_world.copy()
    T_camera_world[frames] = np.concatenate([rotation, -np.einsum("sij,sj->si", rotation, centres)[..., None]], 2)
    xyz = similarity.scale * model.xyz @ similarity.rotation.T + similarity.translation
    moved = CameraSet(T_camera_world, cameras.intrinsics, cameras.distortion)
    return moved, SparseModel(xyz, model.point, model.frame, model.keypoint, model.pixel)


def _depth_pairs(
    reconstruction: Reconstruction, cameras: CameraSet, model: SparseModel, frames: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, predicted depth, the point's depth in ``cameras``) at every observation (of ``frames``) where both
    depths are positive."""
    observed = np.ones(len(model.frame), bool) if frames is None else np.isin(model.frame, frames)
    frame, pixel, xyz = model.frame[observed], model.pixel[observed], model.xyz[model.point[observed]]
    _, z = project_points(cameras, frame, xyz)
    depth, inside = _sample(reconstruction.depth, frame, model_pixels(reconstruction.transforms, frame, pixel))
    usable = inside & (depth > 0) & (z > 0) & np.isfinite(depth)
    return frame[usable], depth[usable], z[usable]


def model_pixels(transforms: Sequence[ImageTransform], frames: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """[N, 2] continuous model pixels of full-resolution pixels seen by ``frames``."""
    scale = np.array([t.scale for t in transforms])[frames]
    offset = np.array([t.offset for t in transforms])[frames]
    return pixels * scale + offset


def to_model_pixels(intrinsics: np.ndarray, transforms: Sequence[ImageTransform]) -> np.ndarray:
    """[S, 3, 3] model-pixel intrinsics from full-resolution ones (the inverse of intrinsics_to_original)."""
    to_model = np.array(
        [[[t.scale[0], 0.0, t.offset[0]], [0.0, t.scale[1], t.offset[1]], [0, 0, 1]] for t in transforms]
    )
    return to_model @ intrinsics


def _sample(array: np.ndarray, frames: np.ndarray, model_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of a per-frame model-resolution array at the nearest model pixel; and which were inside."""
    height, width = array.shape[1:3]
    cols, rows = np.floor(model_xy[:, 0]).astype(np.int64), np.floor(model_xy[:, 1]).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    values = array[frames, rows.clip(0, height - 1), cols.clip(0, width - 1)]
    return values, inside


def point_colours(reconstruction: Reconstruction, model: SparseModel) -> np.ndarray:
    """[N, 3] uint8 colour of each point: the model input's colour where it is first observed."""
    if len(model.xyz) == 0:
        return np.zeros((0, 3), dtype=np.uint8)
    first = np.searchsorted(model.point, np.arange(len(model.xyz)))
    frames = model.frame[first]
    colours, _ = _sample(
        reconstruction.colors, frames, model_pixels(reconstruction.transforms, frames, model.pixel[first])
    )
    return colours.astype(np.uint8)


def align_depth(
    reconstruction: Reconstruction, predicted: CameraSet, refined: CameraSet, model: SparseModel
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Depth maps aligned per frame to the triangulated points, and the point maps moved with their camera.

    Each frame's predicted depth d becomes scale * d + shift, fitted to the points' depth under the refined
    camera at their pixels: the median ratio, and a shift only where it clearly explains the points better
    (``_depth_fit``). Frames with fewer than ``MIN_DEPTH_SAMPLES`` usable observations keep their depth.
    Returns (depth, world points or None, [S] scale per frame, [S] shift per frame).
    """
    scales, shifts = np.ones(reconstruction.num_frames), np.zeros(reconstruction.num_frames)
    frame, predicted_depth, z = _depth_pairs(reconstruction, refined, model)
    for index, chosen in _frame_groups(frame, MIN_DEPTH_SAMPLES):
        scales[index], shifts[index] = _depth_fit(predicted_depth[chosen], z[chosen], reconstruction.depth[index])
    # float32 throughout: one new array of the maps' size (1.6 GB of float64 at 1,000 frames otherwise).
    depth = (reconstruction.depth * scales.astype(np.float32)[:, None, None]).astype(np.float32, copy=False)
    for index in np.flatnonzero(shifts):
        depth[index][depth[index] > 0] += np.float32(shifts[index])  # the scale is positive: same pixels
    world_points = reconstruction.world_points
    if world_points is not None:
        world_points = _move_point_maps(world_points, predicted, refined, scales, shifts)
    return depth, world_points, scales, shifts


def _depth_fit(predicted: np.ndarray, target: np.ndarray, depth_map: np.ndarray) -> tuple[float, float]:
    """(scale, shift) with target ~ scale * predicted + shift: the median ratio, or a robust affine fit where it
    at least halves the median relative error (``SHIFT_GAIN``) and keeps every positive depth of the frame's
    ``depth_map`` positive."""
    scale = float(np.median(target / predicted))
    scale_error = float(np.median(np.abs(scale * predicted - target) / target))
    if len(predicted) < MIN_SHIFT_SAMPLES or scale_error == 0:
        return scale, 0.0
    # Least squares on the points the scale alone explains within 3 median errors, refitted once on its own inliers.
    inliers = np.abs(scale * predicted - target) / target <= 3 * scale_error
    for _ in range(2):
        if inliers.sum() < MIN_SHIFT_SAMPLES or np.ptp(predicted[inliers]) == 0:
            return scale, 0.0
        slope, shift = _line_fit(predicted[inliers], target[inliers])
        relative = np.abs(slope * predicted + shift - target) / target
        inliers = relative <= 3 * np.median(relative)
    if slope <= 0 or float(np.median(relative)) > SHIFT_GAIN * scale_error:
        return scale, 0.0
    nearest = float(depth_map[depth_map > 0].min(initial=np.inf))
    return (float(slope), float(shift)) if slope * nearest + shift > 0 else (scale, 0.0)


def _line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line y ~ slope * x + intercept, in float64 about the mean of x: well
    conditioned however little x varies (a plane seen face-on), where ``np.polyfit`` on float32 depth judged the
    fit rank-deficient and warned once per frame. ``x`` must not be constant."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    dx = x - x.mean()
    slope = float(dx @ (y - y.mean()) / (dx @ dx))
    return slope, float(y.mean() - slope * x.mean())


def _move_point_maps(
    world_points: np.ndarray, predicted: CameraSet, refined: CameraSet, scales: np.ndarray, shifts: np.ndarray
) -> np.ndarray:
    """Point maps into each frame's predicted camera, moved along their rays to the aligned depth (scale * z +
    shift), then out through its refined camera."""
    moved = np.empty_like(world_points)
    for frame in range(len(world_points)):
        before, after = predicted.T_camera_world[frame], refined.T_camera_world[frame]
        camera = world_points[frame].astype(np.float64) @ before[:, :3].T + before[:, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = scales[frame] + np.where(camera[..., 2:] > 0, shifts[frame] / camera[..., 2:], 0.0)
        camera = camera * factor
        moved[frame] = ((camera - after[:, 3]) @ after[:, :3]).astype(world_points.dtype)
    return moved
