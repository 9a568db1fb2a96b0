"""The exported point cloud: confident pixels lifted to 3D, then voxel-downsampled to a point budget.

Runs on the host with numpy only. Frames are lifted in parallel and only a bounded number of
candidates (a fixed multiple of the budget, drawn uniformly with a fixed seed) is ever held, so tens
of millions of input pixels cost seconds. Voxel downsampling keeps, in every occupied voxel, the
most confident sample itself (not an average), so every point is a predicted surface point with a
known source pixel.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from vggt_sparse_ns.export.config import ExportConfig, ExportError, PointSource
from vggt_sparse_ns.export.geometry import model_pixel_centres, unproject
from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

CANDIDATES_PER_POINT = 4
"""Candidates drawn per point of the budget before voxel downsampling."""
PERCENTILE_SAMPLES = 2_000_000
"""Confidence values sampled (evenly strided) to estimate the percentile threshold."""
SAMPLING_SEED = 0
VOXEL_SEARCH_STEPS = 12
VOXEL_FILL_TARGET = 0.9
"""The voxel search stops once the downsampled cloud fills this fraction of the budget."""


@dataclass(frozen=True)
class PointCloud:
    """Points in VGGT's world with their colour, confidence and source pixel."""

    xyz: np.ndarray
    """[N, 3] float32, VGGT world (frame 0's OpenCV camera)."""
    rgb: np.ndarray
    """[N, 3] uint8."""
    confidence: np.ndarray
    """[N] float32, the confidence of the source pixel."""
    frame: np.ndarray
    """[N] int32, the frame each point was seen in."""
    pixel: np.ndarray
    """[N, 2] float32, (x, y) continuous model-pixel coordinates of the source pixel centre."""
    confidence_threshold: float
    voxel_size: float
    """Edge of the downsampling voxels in world units; 0 when no downsampling was needed."""

    def __len__(self) -> int:
        return len(self.xyz)


def _confidence(reconstruction: Reconstruction, source: PointSource) -> np.ndarray:
    if source == "depth":
        return reconstruction.depth_conf
    if reconstruction.world_points is None or reconstruction.world_points_conf is None:
        raise ExportError("point_source 'points' needs the point head's world points; use point_source 'depth'")
    return reconstruction.world_points_conf


def valid_box_mask(transform: ImageTransform, height: int, width: int) -> np.ndarray:
    """[H, W] True on model pixels that show the image (not padding)."""
    x0, y0, x1, y1 = transform.valid_box
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def confidence_threshold(
    confidence: np.ndarray, transforms: list[ImageTransform], percentile: float, minimum: float
) -> float:
    """The confidence a pixel needs to be kept: the percentile over the images' pixels (padding
    excluded), estimated from an even sample, and at least ``minimum``."""
    valid_counts = [(t.valid_box[2] - t.valid_box[0]) * (t.valid_box[3] - t.valid_box[1]) for t in transforms]
    stride = max(1, sum(valid_counts) // PERCENTILE_SAMPLES)
    samples = []
    for frame_confidence, transform in zip(confidence, transforms, strict=True):
        x0, y0, x1, y1 = transform.valid_box
        values = frame_confidence[y0:y1, x0:x1].ravel()[::stride]
        samples.append(values[np.isfinite(values)])
    sample = np.concatenate(samples)
    if sample.size == 0:
        raise ExportError("Every confidence value is NaN or infinite: the reconstruction is unusable.")
    at_percentile = float(np.percentile(sample, percentile)) if percentile > 0 else float(sample.min())
    return max(at_percentile, float(minimum))


def keep_mask(reconstruction: Reconstruction, index: int, source: PointSource, threshold: float) -> np.ndarray:
    """[H, W] True on frame ``index``'s pixels that show the image, hold a finite prediction and pass
    the confidence threshold."""
    confidence = _confidence(reconstruction, source)[index]
    if source == "depth":
        depth = reconstruction.depth[index]
        finite = np.isfinite(depth) & (depth > 0)
    else:
        finite = np.isfinite(reconstruction.world_points[index]).all(axis=-1)
    height, width = confidence.shape
    with np.errstate(invalid="ignore"):
        confident = confidence >= threshold
    return confident & finite & valid_box_mask(reconstruction.transforms[index], height, width)


@dataclass(frozen=True)
class ConfidentPixels:
    """The model pixels that pass the confidence filter for one source of confidence, computed once
    and shared by the point cloud and the depth maps."""

    source: PointSource
    threshold: float
    masks: np.ndarray
    """[S, H, W] bool, ``keep_mask`` of every frame."""


def confident_pixels(reconstruction: Reconstruction, source: PointSource, config: ExportConfig) -> ConfidentPixels:
    """The confidence threshold of ``source`` (config.confidence_percentile, at least config.min_confidence)
    and every frame's pixels that pass it."""
    threshold = confidence_threshold(
        _confidence(reconstruction, source),
        reconstruction.transforms,
        config.confidence_percentile,
        config.min_confidence,
    )
    masks = np.stack([keep_mask(reconstruction, i, source, threshold) for i in range(reconstruction.num_frames)])
    return ConfidentPixels(source, threshold, masks)


def build_point_cloud(
    reconstruction: Reconstruction, confident: ConfidentPixels, max_points: int, workers: int | None = None
) -> PointCloud:
    """The ``confident`` pixels of every frame as world points, downsampled to at most ``max_points``.
    Frames are lifted ``workers`` at a time (default: one per CPU); the result does not depend on it."""
    counts = np.count_nonzero(confident.masks.reshape(len(confident.masks), -1), axis=1)
    total = int(counts.sum())
    if total == 0:
        raise ExportError(
            f"No pixel passed the confidence filter (threshold {confident.threshold:.3g}); "
            "lower --confidence-percentile or --min-confidence."
        )
    fraction = min(1.0, CANDIDATES_PER_POINT * max_points / total)
    rng = np.random.default_rng(SAMPLING_SEED)
    # The draws are made in frame order, as one stream, so the candidates do not depend on the workers.
    drawn = [rng.random(count) < fraction if fraction < 1.0 else None for count in counts]

    def lift(index: int) -> tuple[np.ndarray, ...]:
        rows, cols = np.nonzero(confident.masks[index])
        if drawn[index] is not None:
            rows, cols = rows[drawn[index]], cols[drawn[index]]
        return _frame_points(reconstruction, index, confident.source, rows, cols)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        parts = list(pool.map(lift, np.flatnonzero(counts)))
    xyz, rgb, confidence, frame, pixel = (np.concatenate(column) for column in zip(*parts, strict=True))
    chosen, voxel_size = voxel_downsample(xyz, confidence, max_points)
    return PointCloud(
        xyz=xyz[chosen],
        rgb=rgb[chosen],
        confidence=confidence[chosen],
        frame=frame[chosen],
        pixel=pixel[chosen],
        confidence_threshold=confident.threshold,
        voxel_size=voxel_size,
    )


def _frame_points(
    reconstruction: Reconstruction, index: int, source: PointSource, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, ...]:
    pixels = model_pixel_centres(rows, cols)
    if source == "depth":
        depth = reconstruction.depth[index, rows, cols].astype(np.float64)
        xyz = unproject(pixels, depth, reconstruction.intrinsics[index], reconstruction.T_camera_world[index])
    else:
        xyz = reconstruction.world_points[index, rows, cols]
    return (
        xyz.astype(np.float32),
        reconstruction.colors[index, rows, cols],
        _confidence(reconstruction, source)[index, rows, cols].astype(np.float32),
        np.full(len(rows), index, dtype=np.int32),
        pixels.astype(np.float32),
    )


def _voxel_keys(offsets: np.ndarray, voxel_size: float) -> np.ndarray:
    """One int64 key per point naming its voxel, from offsets [3, N] (float32, >= 0) to the cloud's
    minimum corner: exact mixed-radix when the grid fits in 62 bits, else a 64-bit hash of the voxel
    indices (a collision then merges two voxels; odds about N^2 / 2^64)."""
    inverse = np.float32(1.0 / voxel_size)
    cells = [np.floor(axis * inverse).astype(np.int64) for axis in offsets]
    dims = [int(axis.max()) + 1 for axis in cells]
    if float(dims[0]) * float(dims[1]) * float(dims[2]) < 2.0**62:
        keys = cells[0]
        keys *= dims[1]
        keys += cells[1]
        keys *= dims[2]
        keys += cells[2]
        return keys
    keys = cells[0].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    keys ^= cells[1].astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F) + (keys >> np.uint64(29))
    keys ^= cells[2].astype(np.uint64) * np.uint64(0x165667B19E3779F9) + (keys >> np.uint64(31))
    return keys.view(np.int64)


def _occupied_voxels(offsets: np.ndarray, voxel_size: float) -> int:
    keys = np.sort(_voxel_keys(offsets, voxel_size))
    return 1 + int(np.count_nonzero(keys[1:] != keys[:-1]))


def voxel_downsample(xyz: np.ndarray, confidence: np.ndarray, max_points: int) -> tuple[np.ndarray, float]:
    """Indices (ascending) of at most ``max_points`` points, one per occupied voxel: its most
    confident point (lowest index on ties). The voxel size is searched so that the count is close
    to the budget. Returns the indices and the voxel size (0 when every point fits)."""
    if len(xyz) <= max_points:
        return np.arange(len(xyz)), 0.0
    offsets = np.ascontiguousarray((xyz - xyz.min(axis=0)).T, dtype=np.float32)
    extent = float(offsets.max())
    if extent == 0.0:
        return np.array([int(np.argmax(confidence))]), 0.0
    voxel_size = _search_voxel_size(offsets, extent, max_points)
    keys = _voxel_keys(offsets, voxel_size)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sorted_confidence = confidence[order]
    best = np.maximum.reduceat(sorted_confidence, starts)
    is_best = sorted_confidence == np.repeat(best, np.diff(np.r_[starts, len(order)]))
    chosen = np.minimum.reduceat(np.where(is_best, order, len(order)), starts)
    return np.sort(chosen), voxel_size


def _search_voxel_size(offsets: np.ndarray, extent: float, max_points: int) -> float:
    """The smallest voxel size tried whose occupied-voxel count fits ``max_points``, searched in
    log-log space (counts fall like size^-2 on surfaces) from a bracket [too small, fits]."""
    small_size, small_count = None, offsets.shape[1]
    fit_size, fit_count = 2.0 * extent, 1
    size = extent * np.sqrt(1.0 / max_points)
    for _ in range(VOXEL_SEARCH_STEPS):
        count = _occupied_voxels(offsets, size)
        if count <= max_points:
            fit_size, fit_count = size, count
            if count >= VOXEL_FILL_TARGET * max_points:
                break
        else:
            small_size, small_count = size, count
        size = _next_voxel_size(small_size, small_count, fit_size, fit_count, max_points)
    return fit_size


def _next_voxel_size(
    small_size: float | None, small_count: int, fit_size: float, fit_count: int, max_points: int
) -> float:
    goal = 0.95 * max_points
    if small_size is None:
        return fit_size * np.sqrt(max(fit_count, 1) / goal)
    slope = np.log(small_count / max(fit_count, 1)) / np.log(small_size / fit_size)
    if slope < 0:
        guess = fit_size * (goal / max(fit_count, 1)) ** (1.0 / slope)
        if small_size < guess < fit_size:
            return float(guess)
    return float(np.sqrt(small_size * fit_size))
