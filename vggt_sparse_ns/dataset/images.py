"""Writing images/ and images_2/4/8 in the layout of ``ns-process-data images``, in parallel.

The pixels nerfstudio's loader reads must be the pixels VGGT saw: that loader ignores EXIF orientation
and reads 16-bit, palette or CMYK files wrongly, so such files are written upright as 8-bit PNGs; every
other file is copied byte for byte (nerfstudio's own copy re-encodes it through ffmpeg). images_N holds
each image at (w // N, h // N) pixels, in its own format: JPEGs are decoded at half size by the JPEG
decoder itself, each further level is a bicubic resize of the previous one. A thread pool writes the
files (decoding, resizing, encoding and copying release the GIL), each whole or not at all.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vggt_sparse_ns.dataset.inputs import ImageProbe
from vggt_sparse_ns.export.atomic import atomic_path
from vggt_sparse_ns.images import decode_rgb, decoding_slot, open_image
from vggt_sparse_ns.output_layout import IMAGES_DIR, downscaled_images_dir

SAVE_OPTIONS = {"JPEG": {"quality": 95}, "PNG": {"compress_level": 1}}
"""Encoder settings of the files we encode: JPEG close to ffmpeg's ``-q:v 2``; PNG at zlib's fastest level."""


@dataclass(frozen=True)
class ImageGroup:
    """Images written under one name prefix (nerfstudio: ``frame_`` or ``frame_train_``/``frame_eval_``)."""

    probes: Sequence[ImageProbe]
    prefix: str


def _target_name(probe: ImageProbe, prefix: str, index: int) -> str:
    suffix = probe.path.suffix if probe.readable_by_nerfstudio else ".png"
    return f"{prefix}{index:05d}{suffix}"


def _save(image: Image.Image, target: Path) -> None:
    image_format = Image.registered_extensions()[target.suffix.lower()]
    with atomic_path(target) as temporary:
        image.save(temporary, format=image_format, **SAVE_OPTIONS.get(image_format, {}))


def _save_downscales(image: Image.Image, size: tuple[int, int], name: str, folders: Sequence[Path]) -> None:
    """``folders[i]/name`` at (w // 2**(i+1), h // 2**(i+1)) for an image of ``size`` = (w, h)."""
    for level, folder in enumerate(folders, start=1):
        scaled = (size[0] >> level, size[1] >> level)
        if image.size != scaled:
            image = image.resize(scaled, Image.Resampling.BICUBIC)
        _save(image, folder / name)


def _write_image(probe: ImageProbe, name: str, image_dir: Path, folders: Sequence[Path]) -> None:
    """One input image into ``image_dir`` and the downscaled ``folders`` (files as large as
    ``images.MAX_IMAGE_PIXELS``, without PIL's decompression-bomb check)."""
    with open_image(probe.path) as image, decoding_slot(image):
        if not probe.readable_by_nerfstudio:
            upright = decode_rgb(image)
            _save(upright, image_dir / name)
            _save_downscales(upright, probe.size, name, folders)
            return
        with atomic_path(image_dir / name) as temporary:
            shutil.copyfile(probe.path, temporary)
        if folders:
            image.draft(image.mode, (probe.size[0] // 2, probe.size[1] // 2))
            _save_downscales(image, probe.size, name, folders)


def write_images(
    groups: Sequence[ImageGroup],
    dataset_dir: Path,
    num_downscales: int,
    workers: int | None = None,
    stop: threading.Event | None = None,
) -> list[list[Path]]:
    """Write every group's images into ``dataset_dir``'s images/ and ``num_downscales`` downscaled folders
    (images_2, ...; none of them may exist yet), ``workers`` files at a time (default: one per CPU); once
    ``stop`` is set, the files not yet begun are skipped.

    Returns, per group, the written full-resolution paths in input order.
    """
    image_dir = dataset_dir / IMAGES_DIR
    folders = [dataset_dir / downscaled_images_dir(level) for level in range(1, num_downscales + 1)]
    for folder in [image_dir, *folders]:
        folder.mkdir(parents=True)
    jobs, written = [], []
    for group in groups:
        names = [_target_name(probe, group.prefix, index + 1) for index, probe in enumerate(group.probes)]
        jobs.extend(zip(group.probes, names, strict=True))
        written.append([image_dir / name for name in names])

    def write(job: tuple[ImageProbe, str]) -> None:
        if stop is None or not stop.is_set():
            _write_image(*job, image_dir, folders)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(write, jobs))
    return written
