"""SIFT keypoints and descriptors of the original image files (pycolmap's SIFT: no weights to download).

Images are read upright (EXIF orientation applied, as in images/), converted to grey and downscaled so
that their longest side is at most ``max_image_size``; keypoints are returned in continuous pixels of the
full-resolution image (docs/conventions.md), whatever resolution they were detected at.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps


@dataclass(frozen=True)
class Features:
    """One image's features."""

    keypoints: np.ndarray
    """[N, 2] float64 (x, y), continuous full-resolution pixels."""
    descriptors: np.ndarray
    """[N, 128] float32, unit length (RootSIFT: L1-normalised, square-rooted)."""
    size: tuple[int, int]
    """(width, height) of the full-resolution image."""

    def __len__(self) -> int:
        return len(self.keypoints)


def read_grey(path: Path, max_image_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as uint8 grey [h, w], downscaled so that max(w, h) <= max_image_size, and its full size."""
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image)
        size = upright.size
        grey = upright.convert("L")
    scale = max_image_size / max(size)
    if scale < 1.0:
        grey = grey.resize((max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(grey, dtype=np.uint8)), size


def _sift_options(max_features: int):
    import pycolmap

    options = pycolmap.FeatureExtractionOptions()
    options.max_image_size = 1 << 30  # the caller downscales
    options.sift.max_num_features = max_features
    return options


def extract_features(
    image_paths: Sequence[Path], *, max_image_size: int, max_features: int, workers: int | None = None
) -> list[Features]:
    """SIFT features of each image, in input order; pycolmap releases the GIL, so images run in threads."""
    import pycolmap

    local = threading.local()

    def extract(path: Path) -> Features:
        if not hasattr(local, "sift"):  # one extractor per thread; on the GPU where pycolmap was built with CUDA
            local.sift = pycolmap.FeatureExtractor.create(_sift_options(max_features), pycolmap.Device.auto)
        grey, size = read_grey(path, max_image_size)
        keypoints, descriptors = local.sift.extract_from_uint8_array(grey)
        scale = np.array([size[0] / grey.shape[1], size[1] / grey.shape[0]])
        return Features(
            keypoints=pycolmap.keypoints_to_matrix(keypoints)[:, :2].astype(np.float64) * scale,
            descriptors=_unit_rows(np.asarray(descriptors.data, dtype=np.float32)),
            size=size,
        )

    workers = workers or max(1, min(len(image_paths), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(extract, image_paths))


def _unit_rows(descriptors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    return descriptors / np.maximum(norms, 1e-12)
