"""Loading images the way VGGT was trained on them, and remembering how to go back.

torch is imported where tensors are made, so that ImageTransform (used by the exporters and the
nerfstudio entry points) costs no torch import.

``load_images`` reproduces the original preprocessing (RGBA composited on white, PIL
bicubic resize, centre crop or white padding) and records, per image, the map from model
pixels to the original file's pixels, so that intrinsics can be expressed at full
resolution. Pixel coordinates are continuous (x, y): the pixel in row i, column j covers
[j, j+1) x [i, i+1) (docs/conventions.md).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:
    from torch import Tensor

PreprocessMode = Literal["crop", "pad"]


class ImageLoadError(ValueError):
    """An image file could not be read or decoded."""


@dataclass(frozen=True)
class ImageTransform:
    """Model pixels from original pixels: x_model = x_original * scale_x - crop_x + pad_x (same for y)."""

    original_size: tuple[int, int]
    """(width, height) of the file after EXIF orientation."""
    resized_size: tuple[int, int]
    """(width, height) after the resize, before crop and padding."""
    crop: tuple[int, int]
    """(left, top) pixels cut from the resized image."""
    pad: tuple[int, int]
    """(left, top) white pixels added before the image in the model input."""
    model_size: tuple[int, int]
    """(width, height) of the model input."""

    @property
    def scale(self) -> tuple[float, float]:
        return (self.resized_size[0] / self.original_size[0], self.resized_size[1] / self.original_size[1])

    @property
    def offset(self) -> tuple[float, float]:
        """Model-pixel offset added after scaling: pad - crop."""
        return (self.pad[0] - self.crop[0], self.pad[1] - self.crop[1])

    @property
    def valid_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the model-input pixels that show the image (not padding)."""
        x0, y0 = self.pad
        width = min(self.resized_size[0] - self.crop[0], self.model_size[0] - x0)
        height = min(self.resized_size[1] - self.crop[1], self.model_size[1] - y0)
        return (x0, y0, x0 + width, y0 + height)

    def model_to_original(self, xy: np.ndarray) -> np.ndarray:
        """Continuous model-pixel coordinates [..., 2] to original-pixel coordinates."""
        return (np.asarray(xy, dtype=np.float64) - self.offset) / self.scale

    def intrinsics_to_original(self, intrinsic: np.ndarray) -> np.ndarray:
        """A 3x3 intrinsic matrix in model pixels, re-expressed in original pixels."""
        to_model = np.array(
            [[self.scale[0], 0.0, self.offset[0]], [0.0, self.scale[1], self.offset[1]], [0.0, 0.0, 1.0]]
        )
        return np.linalg.solve(to_model, np.asarray(intrinsic, dtype=np.float64))


@dataclass
class ImageBatch:
    pixels: np.ndarray
    """[S, H, W, 3] uint8 model pixels (also the colours of the exported points)."""
    transforms: list[ImageTransform]
    paths: list[Path]

    @property
    def tensor(self) -> Tensor:
        """[S, 3, H, W] uint8, a view of ``pixels``: the model and MegaLoc take it as it is, move it to their
        device a chunk at a time and make it float there (``layers.precision.unit_range``), so no float
        copy of all images (four times the bytes) is made on the host."""
        import torch

        return torch.from_numpy(self.pixels).permute(0, 3, 1, 2)


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """An 8-bit RGB image: EXIF orientation applied, alpha composited on white, grayscale,
    palette and 16-bit images converted."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"Cannot read image {path}: {error}") from error
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            peak = 65535.0
        else:  # 32-bit integer or float images carry no range: infer it from the values
            peak = 1.0 if image.mode == "F" and values.max() <= 1.0 else (65535.0 if values.max() > 255 else 255.0)
        image = Image.fromarray(np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return image if image.mode == "RGB" else image.convert("RGB")


def _resized_size(width: int, height: int, mode: PreprocessMode, target: int, patch: int) -> tuple[int, int]:
    if mode == "crop" or width >= height:
        return target, round(height * (target / width) / patch) * patch
    return round(width * (target / height) / patch) * patch, target


def _preprocess(path: Path, mode: PreprocessMode, target: int, patch: int) -> tuple[np.ndarray, ImageTransform]:
    """[h, w, 3] uint8 model pixels of one file (resized, cropped or padded white) and their transform."""
    image = open_rgb(path)
    original = image.size
    resized = _resized_size(*original, mode, target, patch)
    pixels = np.asarray(image.resize(resized, Image.Resampling.BICUBIC))
    crop_top = (resized[1] - target) // 2 if mode == "crop" and resized[1] > target else 0
    pixels = pixels[crop_top : crop_top + target] if crop_top else pixels
    pad = (0, 0)
    if mode == "pad":
        pixels, pad = _pad_white(pixels, target, target)
    transform = ImageTransform(original, resized, (0, crop_top), pad, (pixels.shape[1], pixels.shape[0]))
    return pixels, transform


def _centre_offset(size: tuple[int, int], height: int, width: int) -> tuple[int, int]:
    """(left, top) white pixels before an image of (h, w) ``size`` centred on a ``height`` x ``width`` canvas."""
    return (width - size[1]) // 2, (height - size[0]) // 2


def _pad_white(pixels: np.ndarray, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Centre [h, w, 3] uint8 pixels on a white canvas of the given size; returns it and the (left, top) padding."""
    left, top = _centre_offset(pixels.shape[:2], height, width)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    canvas[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return canvas, (left, top)


def load_images(
    paths: Sequence[str | os.PathLike],
    mode: PreprocessMode = "crop",
    target_size: int = 518,
    patch_size: int = 14,
    workers: int | None = None,
    stop: threading.Event | None = None,
    canvas: tuple[int, int] = (0, 0),
) -> ImageBatch:
    """Decode and preprocess images in parallel into one batch.

    crop: width ``target_size``, height rounded to a multiple of ``patch_size`` and centre
    cropped to ``target_size`` if taller. pad: long side ``target_size``, white padding to a
    square. Images that end up with different sizes are padded (white, centred) to the largest, and to at least
    ``canvas`` (height, width): the size of the other images of the scene where they are loaded elsewhere.
    Once ``stop`` is set, the images not yet begun are skipped and ImageLoadError is raised: a
    caller that no longer needs them does not wait for them.
    """
    if mode not in ("crop", "pad"):
        raise ValueError(f"preprocess mode must be 'crop' or 'pad', not {mode!r}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ImageLoadError("No images to load.")
    workers = workers or min(32, (os.cpu_count() or 1) * 2, len(paths))

    def decode(path: Path) -> tuple[np.ndarray, ImageTransform] | None:
        if stop is not None and stop.is_set():
            return None
        return _preprocess(path, mode, target_size, patch_size)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        loaded = list(pool.map(decode, paths))
    if stop is not None and stop.is_set():
        raise ImageLoadError("Image loading was stopped before all images were decoded.")
    height = max(canvas[0], *(pixels.shape[0] for pixels, _ in loaded))
    width = max(canvas[1], *(pixels.shape[1] for pixels, _ in loaded))
    batch = np.full((len(loaded), height, width, 3), 255, dtype=np.uint8)
    transforms = []
    for index, (pixels, transform) in enumerate(loaded):
        left, top = _centre_offset(pixels.shape[:2], height, width)
        batch[index, top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
        transforms.append(
            ImageTransform(
                transform.original_size,
                transform.resized_size,
                transform.crop,
                (transform.pad[0] + left, transform.pad[1] + top),
                (width, height),
            )
        )
    return ImageBatch(batch, transforms, paths)
