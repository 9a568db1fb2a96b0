"""The exported point cloud: confident pixels lifted to 3D, then voxel-downsampled to a point budget.

The work runs in torch on the reconstruction's device (the GPU when the model ran there; the same code
on every device), a chunk of frames at a time: the keep masks, a deterministic draw of a bounded number
of candidates (a fixed multiple of the budget), their lifting to 3D and the voxel downsampling. Only what
the keep masks read travels to the device in full (confidences, and depths or world points); the
candidates' values are gathered on the host.
Every step on the device is integer or correctly rounded float32 element-wise arithmetic, so the cloud
does not depend on the device, the thread count or the chunking. Voxel downsampling keeps, in every
occupied voxel, the most confident sample itself (not an average), so every point is a predicted
surface point with a known source pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vggt_sparse_ns.export.config import ExportConfig, ExportError, PointSource
from vggt_sparse_ns.export.geometry import model_pixel_centres, unproject
from vggt_sparse_ns.export.transfer import to_device
from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

CANDIDATES_PER_POINT = 4
"""Candidates drawn per point of the budget before voxel downsampling."""
PERCENTILE_SAMPLES = 2_000_000
"""Confidence values sampled (evenly strided) to estimate the percentile threshold."""
SAMPLING_SEED = 0
PATTERN_DRAWS = 2**16
"""Candidates expected in the pattern that the frames' draws are windows of: enough that frames draw
nearly independently, and that a small budget still draws some candidates."""
MAX_PATTERN_PIXELS = 2**26
"""The pattern's length at most (bytes on the host and the device), whatever the budget."""
CHUNK_PIXELS = 2**22
"""Model pixels (about 28 frames of 518x294) processed at a time: bounds device memory and temporaries."""
VOXEL_SEARCH_STEPS = 12
VOXEL_FILL_TARGET = 0.9
"""The voxel search stops once the downsampled cloud fills this fraction of the budget."""
MAX_KEY = 2**62
"""Voxel keys stay below this, so int64 arithmetic on them never overflows."""


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


def _frame_chunks(frames: int, pixels_per_frame: int) -> Iterator[slice]:
    """Consecutive frame ranges of at most CHUNK_PIXELS pixels (at least one frame each)."""
    step = max(1, CHUNK_PIXELS // pixels_per_frame)
    for start in range(0, frames, step):
        yield slice(start, min(start + step, frames))


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


def _inside_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """[B, H, W] True inside each frame's box (x0, y0, x1, y1) from boxes [B, 4]."""
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    inside_rows = (rows >= boxes[:, 1:2]) & (rows < boxes[:, 3:4])
    inside_cols = (cols >= boxes[:, 0:1]) & (cols < boxes[:, 2:3])
    return inside_rows[:, :, None] & inside_cols[:, None, :]


def _keep_masks(
    reconstruction: Reconstruction, source: PointSource, threshold: float, frames: slice, device: torch.device | str
) -> tuple[Tensor, float]:
    """[B, H, W] True on the ``frames``' pixels that show the image, hold a finite prediction and pass
    the confidence threshold, and the largest depth they keep (0 for the point head's source)."""
    confidence = to_device(_confidence(reconstruction, source)[frames], device)
    keep = confidence >= threshold
    boxes = torch.tensor([t.valid_box for t in reconstruction.transforms[frames]], device=device)
    keep &= _inside_boxes(boxes, *confidence.shape[1:])
    if source == "points":
        keep &= torch.isfinite(to_device(reconstruction.world_points[frames], device)).all(dim=-1)
        return keep, 0.0
    depth = to_device(reconstruction.depth[frames], device)
    keep &= depth > 0
    keep &= depth < torch.inf
    return keep, float(torch.where(keep, depth, 0.0).amax()) if keep.numel() else 0.0


@dataclass(frozen=True)
class ConfidentPixels:
    """The model pixels that pass the confidence filter for one source of confidence, computed once
    and shared by the point cloud and the depth maps."""

    source: PointSource
    threshold: float
    keep: Tensor
    """[S, H, W] bool on the device it was computed on: the frames' pixels that show the image, hold a
    finite prediction and pass the threshold."""
    total: int
    """True pixels in all frames."""
    deepest: float
    """The largest depth at a True pixel (source "depth"; 0 when none is True, and for "points")."""


def confident_pixels(
    reconstruction: Reconstruction, source: PointSource, config: ExportConfig, device: torch.device | str = "cpu"
) -> ConfidentPixels:
    """The confidence threshold of ``source`` (config.confidence_percentile, at least config.min_confidence)
    and every frame's pixels that pass it, found on ``device``."""
    confidence = _confidence(reconstruction, source)
    threshold = confidence_threshold(
        confidence, reconstruction.transforms, config.confidence_percentile, config.min_confidence
    )
    frames, height, width = confidence.shape
    keep = torch.empty((frames, height, width), dtype=torch.bool, device=device)
    total, deepest = 0, 0.0
    for chunk in _frame_chunks(frames, height * width):
        keep[chunk], chunk_deepest = _keep_masks(reconstruction, source, threshold, chunk, device)
        deepest = max(deepest, chunk_deepest)
        # summed as bytes: several times faster than a sum of bools on the CPU
        total += int(keep[chunk].view(torch.uint8).sum(dtype=torch.int64))
    return ConfidentPixels(source, threshold, keep, total, deepest)


def _candidate_draw(fraction: float, frames: int, pixels: int, device: torch.device | str) -> Callable[[slice], Tensor]:
    """The draw of candidates: for a range of frames, [B, pixels] bool on ``device``, True on the
    (flattened) pixels drawn, each with probability ``fraction``. A cyclic pattern of independent draws
    is made with SAMPLING_SEED, long enough to hold about PATTERN_DRAWS of them (at least a frame, at
    most all frames and MAX_PATTERN_PIXELS), and each frame takes the window at its own drawn offset: a copy per pixel on the
    device, the same on every device."""
    rng = np.random.default_rng(SAMPLING_SEED)
    length = max(pixels, min(frames * pixels, MAX_PATTERN_PIXELS, math.ceil(PATTERN_DRAWS / fraction)))
    pattern = np.zeros(length + pixels - 1, dtype=bool)
    pattern[rng.choice(length, rng.binomial(length, fraction), replace=False)] = True
    pattern[length:] = pattern[: pixels - 1]
    shifts = to_device(rng.integers(0, length, frames), device)
    windows = to_device(pattern, device).unfold(0, pixels, 1)
    return lambda chunk: windows[shifts[chunk]]


def _pixels_at(array: np.ndarray, flat: Tensor) -> Tensor:
    """The pixels [N, ...] of host array [B, H, W, ...] at host flat indices [N] into B * H * W."""
    return torch.from_numpy(array).flatten(0, 2)[flat]


def _lift(
    reconstruction: Reconstruction, source: PointSource, frames: slice, flat: Tensor, device: torch.device | str
) -> tuple[Tensor, Tensor]:
    """World points [N, 3] and confidences [N] (float32, on ``device``) of the ``frames``' pixels at host
    flat indices [N] into the chunk [B * H * W]. The pixels are gathered on the host, so only they travel.
    Depth is unprojected through the pixel centres with each frame's camera in float32 element-wise
    operations (no matrix products, whose rounding differs by device)."""
    confidence = _pixels_at(_confidence(reconstruction, source)[frames], flat).float().to(device)
    if source == "points":
        return _pixels_at(reconstruction.world_points[frames], flat).float().to(device), confidence
    height, width = reconstruction.depth.shape[1:]
    depth = _pixels_at(reconstruction.depth[frames], flat).float().to(device)
    flat = flat.to(device)
    frame, pixel = flat // (height * width), flat % (height * width)
    intrinsics = to_device(np.asarray(reconstruction.intrinsics[frames], np.float32), device)[frame]
    pose = to_device(np.asarray(reconstruction.T_camera_world[frames], np.float32), device)[frame]
    return unproject(model_pixel_centres(pixel // width, pixel % width), depth, intrinsics, pose), confidence


def build_point_cloud(
    reconstruction: Reconstruction, confident: ConfidentPixels, max_points: int, device: torch.device | str = "cpu"
) -> PointCloud:
    """The ``confident`` pixels of every frame as world points, downsampled to at most ``max_points``.
    Candidates (CANDIDATES_PER_POINT per point of the budget, drawn uniformly) are lifted and
    downsampled on ``device``; the result does not depend on it."""
    total = confident.total
    if total == 0:
        raise ExportError(
            f"No pixel passed the confidence filter (threshold {confident.threshold:.3g}); "
            "lower --confidence-percentile or --min-confidence."
        )
    frames, height, width = confident.keep.shape
    pixels = height * width
    fraction = min(1.0, CANDIDATES_PER_POINT * max_points / total)
    drawn = _candidate_draw(fraction, frames, pixels, device) if fraction < 1.0 else None
    xyz, confidence, source_pixel = [], [], []
    for chunk in _frame_chunks(frames, pixels):
        keep = confident.keep[chunk].flatten(1).to(device)
        if drawn is not None:
            keep = keep & drawn(chunk)
        flat = keep.flatten().nonzero().squeeze(1).cpu()
        chunk_xyz, chunk_confidence = _lift(reconstruction, confident.source, chunk, flat, device)
        xyz.append(chunk_xyz)
        confidence.append(chunk_confidence)
        source_pixel.append(flat + chunk.start * pixels)
    all_xyz, all_confidence = torch.cat(xyz), torch.cat(confidence)
    chosen, voxel_size = voxel_downsample(all_xyz, all_confidence, max_points)
    flat = torch.cat(source_pixel)[chosen.cpu()]
    return PointCloud(
        xyz=all_xyz[chosen].cpu().numpy(),
        rgb=_pixels_at(reconstruction.colors, flat).numpy(),
        confidence=all_confidence[chosen].cpu().numpy(),
        frame=(flat // pixels).numpy().astype(np.int32),
        pixel=model_pixel_centres(flat % pixels // width, flat % width).numpy(),
        confidence_threshold=confident.threshold,
        voxel_size=voxel_size,
    )


def _ranks(values: Tensor) -> tuple[Tensor, int]:
    """The rank of each value among the distinct values, and how many there are."""
    distinct, rank = torch.unique(values, return_inverse=True)
    return rank, len(distinct)


def _pair_keys(major: Tensor, major_span: int, minor: Tensor) -> tuple[Tensor, int]:
    """Keys naming the (major, minor) pairs of non-negative integers exactly, major in [0, major_span):
    major * (minor's span) + minor, over the ranks of the values when that would exceed MAX_KEY.
    Returns them and their span."""
    minor_span = int(minor.max()) + 1
    if major_span * minor_span > MAX_KEY:
        major, major_span = _ranks(major)
        minor, minor_span = _ranks(minor)
    return major * minor_span + minor, major_span * minor_span


def _voxel_keys(offsets: Tensor, voxel_size: float) -> Tensor:
    """One key per point naming its voxel exactly, from offsets [3, N] (float32, >= 0) to the cloud's
    minimum corner; int32 when the keys fit (faster to sort), else int64."""
    cells = torch.floor(offsets * float(np.float32(1.0 / voxel_size))).long()
    keys, span = cells[0], int(cells[0].max()) + 1
    for axis in cells[1:]:
        keys, span = _pair_keys(keys, span, axis)
    return keys.int() if span <= 2**31 else keys


def _occupied_voxels(offsets: Tensor, voxel_size: float) -> int:
    return len(torch.unique(_voxel_keys(offsets, voxel_size)))


def voxel_downsample(xyz: Tensor, confidence: Tensor, max_points: int) -> tuple[Tensor, float]:
    """Indices (ascending, on xyz's device) of at most ``max_points`` points [N, 3], one per occupied
    voxel: its most confident point (lowest index on ties). The voxel size is searched so that the
    count is close to the budget. Returns the indices and the voxel size (0 when every point fits)."""
    count = len(xyz)
    if count <= max_points:
        return torch.arange(count, device=xyz.device), 0.0
    axes = xyz.T.contiguous()
    offsets = axes - axes.amin(dim=1, keepdim=True)
    extent = float(offsets.max())
    if extent == 0.0:
        return torch.argmax(confidence).reshape(1), 0.0
    voxel_size = _search_voxel_size(offsets, extent, max_points)
    voxels, voxel = torch.unique(_voxel_keys(offsets, voxel_size), return_inverse=True)
    best = confidence.new_full((len(voxels),), -torch.inf).scatter_reduce(0, voxel, confidence, "amax")
    indices = torch.arange(count, device=xyz.device)
    at_best = torch.where(confidence == best[voxel], indices, count)
    chosen = indices.new_full((len(voxels),), count).scatter_reduce(0, voxel, at_best, "amin")
    return torch.sort(chosen).values, voxel_size


def _search_voxel_size(offsets: Tensor, extent: float, max_points: int) -> float:
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
