"""SIFT keypoints and descriptors of the original image files (no weights to download): pycolmap's SIFT on the
CPU, or ours in PyTorch (``refine/sift.py``) on a GPU; ``feature_extractor`` chooses.

Images are decoded as the model sees them (``images.decode_rgb``: upright, 16-bit files rounded to 8 bits,
transparency on white, files up to ``images.MAX_IMAGE_PIXELS``), converted to grey and downscaled so
that their longest side is at most ``max_image_size``; keypoints are returned in continuous pixels of the
full-resolution image (docs/conventions.md), whatever resolution they were detected at.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from vggt_sparse_ns.cpus import usable_cpus
from vggt_sparse_ns.images import decode_rgb, decoding_slot, open_image
from vggt_sparse_ns.refine.sift import detect_and_describe


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
    with open_image(path) as image, decoding_slot(image):
        upright = decode_rgb(image)
    size = upright.size
    grey = upright.convert("L")
    scale = max_image_size / max(size)
    if scale < 1.0:
        grey = grey.resize((max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(grey, dtype=np.uint8)), size


def _full_resolution(keypoints: np.ndarray, grey_shape: tuple[int, ...], size: tuple[int, int]) -> np.ndarray:
    """[N, 2] keypoints detected on the downscaled grey image (continuous pixels) in full-resolution pixels."""
    return keypoints.astype(np.float64) * np.array([size[0] / grey_shape[1], size[1] / grey_shape[0]])


UPSAMPLE_BELOW = 1000
"""Images whose longest detection side is below this are upsampled 2x inside SIFT (its first octave -1, COLMAP's
default), larger ones are not: measured on 1920x1080 views at 1600 px, upsampling took 4.4x the time
(4.4 against 1.0 s per image on this machine) for features too fine to matter at that size."""


def _sift_options(max_features: int, upsample: bool, affine_shape: bool):
    import pycolmap

    options = pycolmap.FeatureExtractionOptions()
    options.max_image_size = 1 << 30  # the caller downscales
    options.sift.max_num_features = max_features
    options.sift.first_octave = -1 if upsample else 0
    options.sift.estimate_affine_shape = affine_shape  # COLMAP then uses its covariant SIFT, on the CPU only
    return options


logger = logging.getLogger(__name__)

IMAGES_PER_WORKER = 8
"""Worker processes start only when each gets at least this many images (starting one costs about a second)."""
_extractors: dict[tuple[int, bool, bool], object] = {}
"""This process's SIFT extractors by (max features, upsample, affine shape)."""


def _extract(
    path: Path, max_image_size: int, max_features: int, affine_shape: bool
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Keypoints [N, 2] in full-resolution pixels, uint8 descriptors [N, 128] and the image size of one image."""
    import pycolmap

    grey, size = read_grey(path, max_image_size)
    key = (max_features, max(grey.shape) < UPSAMPLE_BELOW, affine_shape)
    if key not in _extractors:  # on the GPU where pycolmap was built with CUDA
        _extractors[key] = pycolmap.FeatureExtractor.create(_sift_options(*key), pycolmap.Device.auto)
    keypoints, descriptors = _extractors[key].extract_from_uint8_array(grey)
    return _full_resolution(pycolmap.keypoints_to_matrix(keypoints)[:, :2], grey.shape, size), descriptors.data, size


FeatureExtractor = Literal["pycolmap", "torch"]


def feature_extractor(
    choice: Literal["auto", "pycolmap", "torch"], device: torch.device, affine_shape: bool = False
) -> FeatureExtractor:
    """The SIFT that runs: ``auto`` picks ours in torch on a GPU (cuda or mps) and pycolmap's on the CPU (faster
    there) or for affine-shaped features (pycolmap only)."""
    if choice != "auto":
        return choice
    return "torch" if device.type in ("cuda", "mps") and not affine_shape else "pycolmap"


def extract_features(
    image_paths: Sequence[Path],
    *,
    max_image_size: int,
    max_features: int,
    affine_shape: bool = False,
    extractor: FeatureExtractor = "pycolmap",
    device: torch.device | None = None,
    workers: int | None = None,
) -> list[Features]:
    """SIFT features of each image, in input order.

    ``extractor`` "torch" runs ``refine/sift.py`` on ``device`` (the CPU when None): images are decoded by a pool of
    threads while the previous ones are described, and sent in batches of equal size; where the device fails
    (a RuntimeError: out of memory, say), pycolmap's SIFT runs instead, with one warning. "pycolmap" runs
    pycolmap's SIFT, as below. ``feature_extractor`` makes the choice.

    ``affine_shape`` describes each keypoint's affine-adapted elliptical region instead of a disk (COLMAP's
    ``estimate_affine_shape``): descriptors that survive the foreshortening between views far apart (see
    ``RefineConfig.refine_affine_features`` for what it gains and costs).

    pycolmap's extractor holds the GIL (measured: a Python thread beside it ran at 1 % of its idle speed), so
    images are spread over worker processes (spawned: the parent may hold a CUDA context), one per usable CPU (``usable_cpus``), when
    there are at least ``IMAGES_PER_WORKER`` images per worker; ``workers`` overrides the count.
    """
    if extractor == "torch":
        if affine_shape:
            raise ValueError("affine-shaped SIFT features are pycolmap's only (extractor='pycolmap')")
        try:
            return _torch_features(image_paths, max_image_size, max_features, device or torch.device("cpu"))
        except RuntimeError as error:  # the GPU's (out of memory, an unsupported operation): pycolmap's SIFT still runs
            logger.warning("SIFT on %s failed (%s); pycolmap's SIFT runs on the CPU instead.", device, error)
    workers = workers or max(1, min(usable_cpus(), len(image_paths) // IMAGES_PER_WORKER))
    settings = {"max_image_size": max_image_size, "max_features": max_features, "affine_shape": affine_shape}
    results = None
    if workers > 1:
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(partial(_extract, **settings), image_paths, chunksize=IMAGES_PER_WORKER))
        except BrokenProcessPool as error:  # e.g. a script without `if __name__ == "__main__":` cannot spawn
            logger.warning("SIFT worker processes failed (%s); extracting in this process.", error)
    if results is None:
        results = [_extract(path, **settings) for path in image_paths]
    return [
        Features(keypoints, _unit_rows(np.asarray(descriptors, dtype=np.float32)), size)
        for keypoints, descriptors, size in results
    ]


def _unit_rows(descriptors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    return descriptors / np.maximum(norms, 1e-12)


DECODED_AHEAD = 32
"""Images the torch path decodes while the previous ones are described (bounds the decoded images held)."""


def _torch_features(
    image_paths: Sequence[Path], max_image_size: int, max_features: int, device: torch.device
) -> list[Features]:
    """``refine/sift.py`` on ``device`` over images decoded in threads (decoding releases the GIL)."""
    results: list[Features | None] = [None] * len(image_paths)
    with ThreadPoolExecutor(max_workers=usable_cpus()) as pool:

        def decode(start: int) -> list[Future]:
            return [pool.submit(read_grey, path, max_image_size) for path in image_paths[start : start + DECODED_AHEAD]]

        ahead = decode(0)
        for start in range(0, len(image_paths), DECODED_AHEAD):
            decoded = [future.result() for future in ahead]
            ahead = decode(start + DECODED_AHEAD)
            for shape in dict.fromkeys(grey.shape for grey, _ in decoded):
                same = [i for i, (grey, _) in enumerate(decoded) if grey.shape == shape]
                batch = torch.from_numpy(np.stack([decoded[i][0] for i in same])).to(device)
                found = detect_and_describe(batch, max_features, upsample=max(shape) < UPSAMPLE_BELOW)
                for i, features in zip(same, found, strict=True):
                    size = decoded[i][1]
                    keypoints = _full_resolution(features.keypoints.cpu().numpy(), shape, size)
                    results[start + i] = Features(keypoints, features.descriptors.cpu().numpy(), size)
    return results
