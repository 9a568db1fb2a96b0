"""Per-frame depth maps on the full-resolution image grid, in the files nerfstudio's depth losses read.

nerfstudio loads a depth file (16-bit PNG or .npy), multiplies it by ``depth_unit_scale_factor``
(dataparser option, default 1e-3) and by the dataparser's pose scale, and compares it with rendered
z-depth. So a file holds z-depth in units of ``depth_unit_scale_factor`` world units (the world of
transforms.json = VGGT's units): then nerfstudio's scaling gives depth in its own scaled world.
0 marks pixels without depth (cropped away, padding, or below the confidence threshold).

Very large frames: a depth map never exceeds MAX_DEPTH_PIXELS; above it the map is halved until it fits
(``depth_map_size``). nerfstudio resizes every depth map to its image (nearest) when it loads it, and the
model predicts depth at 518 pixels, so the smaller file carries the same depth.

Resampling: every full-resolution pixel centre is mapped to model pixels (undoing resize, crop and
padding). Inside a surface the inverse depth is interpolated bilinearly (exact on planes, where
1/z is affine in pixel coordinates); across a depth edge or next to a dropped pixel the nearest
model pixel is taken, so no depth is invented between surfaces.

Frames of one image size are resampled and encoded in batches on the reconstruction's device (the
GPU when the model ran there); the host only compresses and writes, a thread per CPU.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import defaultdict, deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from isal import isal_zlib
from torch import Tensor

from vggt_sparse_ns.export.atomic import atomic_path
from vggt_sparse_ns.export.config import DepthFormat, ExportError
from vggt_sparse_ns.export.points import ConfidentPixels
from vggt_sparse_ns.export.transfer import to_device, to_host
from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.output_layout import DEPTH_DIR, downscaled_depth_dir
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

PNG_MAX = 65535
PNG_COMPRESSION = 1
"""ISA-L deflate level (0-3): its level 1 writes files as small as zlib's level 1 four times as fast; the Up
filter below keeps them small (smooth depth differs little row to row)."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_UP_FILTER = 2
NPY_UNIT = 1e-3
"""World units per .npy value: the dataparser's default depth_unit_scale_factor, so no flag is needed."""
EDGE_RATIO = 1.05
"""Neighbouring model depths further apart than this ratio are a depth edge: no interpolation across."""
BATCH_PIXELS = 2**25
"""Full-resolution pixels resampled at a time (16 frames of 1920x1080): bounds device and host memory."""
MAX_DEPTH_PIXELS = 2**25
"""The most pixels of one depth map (e.g. 8192 x 4096); larger frames get theirs at (w // 2**k, h // 2**k),
the largest that fits: a 16000x12000 frame's full-resolution map would be 384 MB of PNG for depth
predicted at 518 pixels."""


@dataclass(frozen=True)
class DepthMaps:
    file_paths: list[str]
    """Per frame, relative to the output folder (depth/<name>)."""
    unit: float
    """World units per stored value: pass it as the dataparser's --depth-unit-scale-factor."""


def _model_coordinates(count: int, original: int, scale: float, offset: float) -> np.ndarray:
    """Model-pixel coordinates of the centres of ``count`` pixels spanning an original axis."""
    return (np.arange(count) + 0.5) * (original / count) * scale + offset


def _bilinear_taps(coordinates: np.ndarray, low: int, high: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two pixel indices around each coordinate (clamped to [low, high): at the border both are
    the edge pixel) and the weight of the upper one."""
    position = coordinates - 0.5
    lower = np.floor(position)
    lower_index = np.clip(lower, low, high - 1).astype(np.int64)
    upper_index = np.clip(lower + 1, low, high - 1).astype(np.int64)
    return lower_index, upper_index, position - lower


def resample_depth(depth: Tensor, keep: Tensor, transform: ImageTransform, size: tuple[int, int]) -> Tensor:
    """[B, h, w] float32 depth on a grid of ``size`` = (w, h) pixels covering the original images, from
    model-resolution depth [B, H, W] whose pixels are used where ``keep`` is True; 0 elsewhere. The
    frames share ``transform``; the work runs on depth's device.

    Separable: each model row is first resampled to the output columns, then output rows blend two
    of those rows; the four taps' depths decide per output pixel whether it lies on one surface."""
    width, height = size
    device = depth.device
    x0, y0, x1, y1 = transform.valid_box
    x_model = _model_coordinates(width, transform.original_size[0], transform.scale[0], transform.offset[0])
    y_model = _model_coordinates(height, transform.original_size[1], transform.scale[1], transform.offset[1])
    rows = np.flatnonzero((y_model >= y0) & (y_model < y1))  # consecutive
    result = depth.new_zeros(depth.shape[0], height, width, dtype=torch.float32)
    if rows.size == 0:
        return result

    def on_device(values: np.ndarray) -> Tensor:
        return to_device(values.astype(np.float32) if values.dtype.kind == "f" else values, device)

    inside_x = on_device((x_model >= x0) & (x_model < x1))
    near_x = on_device(np.clip(np.floor(x_model), x0, x1 - 1).astype(np.int64))
    near_y = on_device(np.clip(np.floor(y_model[rows]), y0, y1 - 1).astype(np.int64))
    low_x, high_x, weight_x = (on_device(a) for a in _bilinear_taps(x_model, x0, x1))
    low_y, high_y, weight_y = (on_device(a[rows]) for a in _bilinear_taps(y_model, y0, y1))

    kept = torch.where(keep, depth.float(), 0.0)
    inverse = torch.where(kept > 0, 1.0 / kept, 0.0)
    # Along x, per model row: nearest depth, blended inverse depth, and the two taps' min and max.
    nearest_x = torch.where(inside_x, kept[..., near_x], 0.0)
    blended_x = torch.lerp(inverse[..., low_x], inverse[..., high_x], weight_x)
    kept_low, kept_high = kept[..., low_x], kept[..., high_x]
    lowest_x, highest_x = torch.minimum(kept_low, kept_high), torch.maximum(kept_low, kept_high)
    # Along y, per output row: the four taps lie on one surface when all are kept and within EDGE_RATIO.
    lowest = torch.minimum(lowest_x[:, low_y], lowest_x[:, high_y])
    highest = torch.maximum(highest_x[:, low_y], highest_x[:, high_y])
    smooth = (lowest > 0) & (highest <= EDGE_RATIO * lowest) & inside_x
    blended = torch.lerp(blended_x[:, low_y], blended_x[:, high_y], weight_y[:, None])
    result[:, rows[0] : rows[-1] + 1] = torch.where(smooth, 1.0 / blended, nearest_x[:, near_y])
    return result


def _png_steps(depth: Tensor, unit: float) -> Tensor:
    """[..., h, w] int32 PNG values: depth in ``unit`` steps, at least 1 where there is depth, 0 where none."""
    steps = torch.clamp(torch.round(depth / unit), 1, PNG_MAX)
    return torch.where(depth > 0, steps, 0).to(torch.int32)


def up_filtered_rows(steps: Tensor) -> Tensor:
    """[..., h, 2w + 1] uint8: the scanlines of a 16-bit grayscale PNG holding ``steps`` [..., h, w] (0-65535),
    each big-endian and Up-filtered (minus the row above, byte-wise modulo 256, as the PNG standard defines
    it), behind its filter-type byte. Runs on steps' device."""
    big_endian = torch.stack((steps >> 8, steps & 0xFF), dim=-1).to(torch.uint8).flatten(-2)
    filtered = torch.cat((big_endian[..., :1, :], big_endian[..., 1:, :] - big_endian[..., :-1, :]), dim=-2)
    filter_type = filtered.new_full((*filtered.shape[:-1], 1), PNG_UP_FILTER)
    return torch.cat((filter_type, filtered), dim=-1)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16_file(scanlines: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG file from its filtered scanlines [h, 2w + 1] (``up_filtered_rows``), deflated by
    ISA-L at level PNG_COMPRESSION (a standard zlib stream). Many times faster than PIL's encoder, which tries
    every filter on every row with zlib."""
    height, width = scanlines.shape[0], (scanlines.shape[1] - 1) // 2
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # 16-bit gray, deflate, no interlace
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", isal_zlib.compress(np.ascontiguousarray(scanlines), PNG_COMPRESSION))
        + _png_chunk(b"IEND", b"")
    )


def _encoded(depth: Tensor, unit: float, depth_format: DepthFormat) -> np.ndarray:
    """[B, ...] per frame: PNG scanlines (uint8) or .npy values (float32), on the host."""
    if depth_format == "npy":
        return to_host((depth / unit).float())
    return to_host(up_filtered_rows(_png_steps(depth, unit)))


def _save(path: Path, encoded: np.ndarray) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        if encoded.dtype == np.uint8:
            file.write(png16_file(encoded))
        else:
            np.save(file, encoded)


def depth_map_size(size: tuple[int, int], level: int) -> tuple[int, int]:
    """The depth map's (width, height) for an image of ``size`` in images_{2**level}: (w // 2**level,
    h // 2**level) like the image, halved further while it has more than MAX_DEPTH_PIXELS."""
    shift = level
    while (size[0] >> shift) * (size[1] >> shift) > MAX_DEPTH_PIXELS:
        shift += 1
    return (size[0] >> shift, size[1] >> shift)


def write_depth_maps(
    reconstruction: Reconstruction,
    output_dir: Path,
    file_stems: Sequence[str],
    confident: ConfidentPixels,
    depth_format: DepthFormat,
    num_downscales: int = 0,
    workers: int | None = None,
    device: torch.device | str = "cpu",
) -> DepthMaps:
    """Write depth/<stem>.<png|npy> at each image's full resolution and depths_N/ for N = 2, 4, ...
    up to 2**num_downscales (the sizes of nerfstudio's images_N; at most MAX_DEPTH_PIXELS, see
    ``depth_map_size``), keeping the ``confident`` pixels (filtered by the depth head's confidence, like the
    points from depth). Resampling and encoding run on ``device``; ``workers`` threads compress and write the
    files (default: one per CPU)."""
    if confident.source != "depth":
        raise ValueError(f"depth maps are filtered by the depth confidence, not by {confident.source!r}")
    if depth_format == "npy":
        unit = NPY_UNIT
    else:
        deepest = confident.deepest
        if deepest <= 0:
            raise ExportError("No depth passed the confidence filter; lower --confidence-percentile.")
        unit = deepest / PNG_MAX
    suffix = ".npy" if depth_format == "npy" else ".png"
    names = [f"{stem}{suffix}" for stem in file_stems]
    if len(set(names)) != len(names):
        raise ExportError("Depth file names collide: image names must have distinct stems.")
    folders = [DEPTH_DIR, *(downscaled_depth_dir(level) for level in range(1, num_downscales + 1))]
    frames_by_transform: dict[ImageTransform, list[int]] = defaultdict(list)
    for index, transform in enumerate(reconstruction.transforms):
        frames_by_transform[transform].append(index)

    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[None]] = deque()
        for transform, frames in frames_by_transform.items():
            width, height = depth_map_size(transform.original_size, 0)
            batch = max(1, BATCH_PIXELS // (width * height))
            for start in range(0, len(frames), batch):
                chosen = frames[start : start + batch]
                depth = to_device(reconstruction.depth[chosen], device)
                keep = confident.keep[chosen].to(device)
                for level, folder in enumerate(folders):
                    size = depth_map_size(transform.original_size, level)
                    encoded = _encoded(resample_depth(depth, keep, transform, size), unit, depth_format)
                    for index, frame_encoded in zip(chosen, encoded, strict=True):
                        pending.append(pool.submit(_save, output_dir / folder / names[index], frame_encoded))
                while len(pending) > 4 * workers:  # the host holds a few batches, not all of them
                    pending.popleft().result()
        for future in pending:
            future.result()
    return DepthMaps([f"{DEPTH_DIR}/{name}" for name in names], unit)
