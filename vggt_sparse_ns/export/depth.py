"""Per-frame depth maps on the full-resolution image grid, in the files nerfstudio's depth losses read.

nerfstudio loads a depth file (16-bit PNG or .npy), multiplies it by ``depth_unit_scale_factor``
(dataparser option, default 1e-3) and by the dataparser's pose scale, and compares it with rendered
z-depth. So a file holds z-depth in units of ``depth_unit_scale_factor`` world units (the world of
transforms.json = VGGT's units): then nerfstudio's scaling gives depth in its own scaled world.
0 marks pixels without depth (cropped away, padding, or below the confidence threshold).

Resampling: every full-resolution pixel centre is mapped to model pixels (undoing resize, crop and
padding). Inside a surface the inverse depth is interpolated bilinearly (exact on planes, where
1/z is affine in pixel coordinates); across a depth edge or next to a dropped pixel the nearest
model pixel is taken, so no depth is invented between surfaces.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vggt_sparse_ns.export.atomic import atomic_path
from vggt_sparse_ns.export.config import DepthFormat, ExportError
from vggt_sparse_ns.export.points import ConfidentPixels
from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

DEPTH_DIR = "depth"
DOWNSCALED_DEPTH_PREFIX = "depths_"
"""nerfstudio's dataparser reads depth for images_N from depths_N/ (same file names)."""
PNG_MAX = 65535
PNG_COMPRESSION = 1
"""zlib level: the fastest; the Up filter below keeps the files small (smooth depth differs little row to row)."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_UP_FILTER = 2
NPY_UNIT = 1e-3
"""World units per .npy value: the dataparser's default depth_unit_scale_factor, so no flag is needed."""
EDGE_RATIO = 1.05
"""Neighbouring model depths further apart than this ratio are a depth edge: no interpolation across."""
ROW_BLOCK = 512


@dataclass(frozen=True)
class DepthMaps:
    file_paths: list[str]
    """Per frame, relative to the output folder (depth/<name>)."""
    unit: float
    """World units per stored value: pass it as the dataparser's --depth-unit-scale-factor."""


def _model_coordinates(count: int, original: int, scale: float, offset: float) -> np.ndarray:
    """Model-pixel coordinates of the centres of ``count`` pixels spanning an original axis."""
    return (np.arange(count) + 0.5) * (original / count) * scale + offset


def resample_depth(depth: np.ndarray, keep: np.ndarray, transform: ImageTransform, size: tuple[int, int]) -> np.ndarray:
    """[h, w] float32 depth on a grid of ``size`` = (w, h) pixels covering the original image, from
    model-resolution depth [H, W] whose pixels are used where ``keep`` is True; 0 elsewhere.

    Separable: each model row is first resampled to the output columns, then output rows blend two
    of those rows, so the cost is a few passes over the output."""
    width, height = size
    x0, y0, x1, y1 = transform.valid_box
    x_model = _model_coordinates(width, transform.original_size[0], transform.scale[0], transform.offset[0])
    y_model = _model_coordinates(height, transform.original_size[1], transform.scale[1], transform.offset[1])
    inside_x = (x_model >= x0) & (x_model < x1)
    inside_y = np.flatnonzero((y_model >= y0) & (y_model < y1))
    near_x = np.clip(np.floor(x_model), x0, x1 - 1).astype(np.intp)
    near_y = np.clip(np.floor(y_model), y0, y1 - 1).astype(np.intp)
    low_x, high_x, weight_x = _bilinear_taps(x_model, x0, x1)
    low_y, high_y, weight_y = _bilinear_taps(y_model, y0, y1)

    kept = np.where(keep, depth, 0.0).astype(np.float32)
    inverse = np.divide(1.0, kept, out=np.zeros_like(kept), where=kept > 0)
    # Along x, per model row: nearest depth, blended inverse depth, and the two taps' min and max.
    weight_x = weight_x.astype(np.float32)
    nearest_x = np.where(inside_x, kept[:, near_x], 0.0)
    blended_x = (1 - weight_x) * inverse[:, low_x] + weight_x * inverse[:, high_x]
    kept_low, kept_high = kept[:, low_x], kept[:, high_x]
    lowest_x = np.minimum(kept_low, kept_high)
    highest_x = np.maximum(kept_low, kept_high)
    # Whether the four taps lie on one surface depends only on the pair of model rows an output row falls
    # between: decided once per pair, then looked up per output row.
    pairs, pair_of_row = np.unique(low_y[inside_y] * (depth.shape[0] + 1) + high_y[inside_y], return_inverse=True)
    pair_low, pair_high = pairs // (depth.shape[0] + 1), pairs % (depth.shape[0] + 1)
    lowest = np.minimum(lowest_x[pair_low], lowest_x[pair_high])
    highest = np.maximum(highest_x[pair_low], highest_x[pair_high])
    smooth_pairs = (lowest > 0) & (highest <= EDGE_RATIO * lowest) & inside_x

    result = np.zeros((height, width), dtype=np.float32)
    scratch = np.empty((min(ROW_BLOCK, len(inside_y)), width), dtype=np.float32)
    for start in range(0, len(inside_y), ROW_BLOCK):  # bounded memory for large images
        rows = inside_y[start : start + ROW_BLOCK]
        weight = weight_y[rows, None].astype(np.float32)
        smooth = smooth_pairs[pair_of_row[start : start + ROW_BLOCK]]
        # Inside rows are consecutive: the block is a view of the result, filled in place.
        out, other = result[rows[0] : rows[-1] + 1], scratch[: len(rows)]
        np.take(blended_x, low_y[rows], axis=0, out=out, mode="clip")
        out *= 1 - weight
        np.take(blended_x, high_y[rows], axis=0, out=other, mode="clip")
        other *= weight
        out += other
        np.divide(1.0, out, out=out, where=smooth)
        np.take(nearest_x, near_y[rows], axis=0, out=other, mode="clip")
        np.copyto(out, other, where=~smooth)
    return result


def _bilinear_taps(coordinates: np.ndarray, low: int, high: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two pixel indices around each coordinate (clamped to [low, high): at the border both are
    the edge pixel) and the weight of the upper one."""
    position = coordinates - 0.5
    lower = np.floor(position)
    lower_index = np.clip(lower, low, high - 1).astype(np.intp)
    upper_index = np.clip(lower + 1, low, high - 1).astype(np.intp)
    return lower_index, upper_index, position - lower


def _encode(depth: np.ndarray, unit: float, depth_format: DepthFormat) -> np.ndarray:
    if depth_format == "npy":
        return (depth / unit).astype(np.float32)
    steps = np.clip(np.rint(depth / unit), 1, PNG_MAX)
    return np.where(depth > 0, steps, 0).astype(np.uint16)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16_bytes(values: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG file of [h, w] uint16 ``values``: every row Up-filtered (minus the row above,
    byte-wise modulo 256, as the PNG standard defines it), zlib level PNG_COMPRESSION. About twice as fast
    as PIL's encoder, which tries every filter on every row."""
    height, width = values.shape
    rows = np.ascontiguousarray(values, dtype=">u2").view(np.uint8).reshape(height, 2 * width)
    filtered = np.empty((height, 2 * width + 1), dtype=np.uint8)
    filtered[:, 0] = PNG_UP_FILTER
    filtered[0, 1:] = rows[0]  # the first row's "row above" is zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # 16-bit gray, deflate, no interlace
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(filtered, PNG_COMPRESSION))
        + _png_chunk(b"IEND", b"")
    )


def _save(path: Path, values: np.ndarray) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        if values.dtype == np.uint16:
            file.write(png16_bytes(values))
        else:
            np.save(file, values)


def write_depth_maps(
    reconstruction: Reconstruction,
    output_dir: Path,
    file_stems: Sequence[str],
    confident: ConfidentPixels,
    depth_format: DepthFormat,
    num_downscales: int = 0,
    workers: int | None = None,
) -> DepthMaps:
    """Write depth/<stem>.<png|npy> at each image's full resolution and depths_N/ for N = 2, 4, ...
    up to 2**num_downscales (the sizes of nerfstudio's images_N), keeping the ``confident`` pixels
    (filtered by the depth head's confidence, like the points from depth). ``workers`` frames are
    written at a time (default: one per CPU; numpy and zlib release the GIL)."""
    if confident.source != "depth":
        raise ValueError(f"depth maps are filtered by the depth confidence, not by {confident.source!r}")
    masks = confident.masks
    if depth_format == "npy":
        unit = NPY_UNIT
    else:
        deepest = max(
            (float(d[m].max()) for d, m in zip(reconstruction.depth, masks, strict=True) if m.any()), default=0.0
        )
        if deepest <= 0:
            raise ExportError("No depth passed the confidence filter; lower --confidence-percentile.")
        unit = deepest / PNG_MAX
    suffix = ".npy" if depth_format == "npy" else ".png"
    names = [f"{stem}{suffix}" for stem in file_stems]
    if len(set(names)) != len(names):
        raise ExportError("Depth file names collide: image names must have distinct stems.")
    factors = [2**level for level in range(num_downscales + 1)]

    def write_frame(index: int) -> None:
        transform = reconstruction.transforms[index]
        for factor in factors:
            size = (transform.original_size[0] // factor, transform.original_size[1] // factor)
            depth = resample_depth(reconstruction.depth[index], masks[index], transform, size)
            folder = DEPTH_DIR if factor == 1 else f"{DOWNSCALED_DEPTH_PREFIX}{factor}"
            _save(output_dir / folder / names[index], _encode(depth, unit, depth_format))

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(write_frame, range(reconstruction.num_frames)))
    return DepthMaps([f"{DEPTH_DIR}/{name}" for name in names], unit)
