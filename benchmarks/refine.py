"""The whole ``ns-process-data vggt-sparse --refine`` command on views of one textured scene, with the refine
stage's time split.

Generates ``--frames`` deterministic 1920x1080 JPEGs unless they are already there: views of a large plane
papered with photographs (scikit-image's sample photographs) from a camera that circles above it, tilting,
so that consecutive frames overlap like a video's and SIFT finds real matches. Then runs the command
in-process (``ProcessVGGTSparse(...).main()``) with covisibility attention and ``--refine``, once on
``--warmup-frames`` of the images, then on all of them, and records every stage's seconds, the refine stage's
split (features, pairs, matching, verification, triangulation, bundle adjustment, ...), the refinement's
figures and the whole command's wall-clock time. With random weights VGGT's cameras are garbage: the
refinement may fall back to them (the row says so), after doing all of its work.

GPU machine (the random checkpoint is about 5 GB; target: 1,000 frames in at most 90 s for the whole command):

    python -m benchmarks.refine --work-dir /tmp/refine --random-checkpoint

CPU smoke test with the tiny fixture model:

    python -m benchmarks.refine --frames 4 --width 480 --height 270 --work-dir /tmp/refine-smoke --device cpu \\
        --checkpoint tests/fixtures/vggt_tiny --output /tmp/refine.json
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.process_data import (
    ProcessDataBenchmark,
    merge_row,
    rounded,
    run_command,
    run_warmup,
    scene_and_machine,
    write_jpegs,
    write_random_checkpoint,
)
from vggt_sparse_ns.output_layout import SUMMARY_FILE
from vggt_sparse_ns.refine.config import CameraModelName, RefineConfig

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "refine.json"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")
"""scikit-image sample photographs (shipped inside the package) tiled into the scene's texture."""
TILE = (1024, 768)
TEXTURE_GRID = (3, 2)
"""Photographs across and down the plane."""
HEIGHT_OVER_PLANE = 1.2
"""Camera distance from the plane, in plane widths."""


@dataclass(frozen=True)
class RefineBenchmark(ProcessDataBenchmark):
    """Settings of one timed run of the command with --refine: the command's (ProcessDataBenchmark), then the
    refinement's."""

    work_dir: Path = Path("/tmp/vggt-refine")
    """Holds images/ (the input, kept between runs), checkpoint/ (with --random-checkpoint) and out/ (replaced)."""
    depth: bool = False
    """Also write depth maps (depth/ and depths_N/)."""
    max_image_size: int = 1600
    """--refine-max-image-size."""
    max_features: int = 4096
    """--refine-max-features."""
    camera_model: CameraModelName = "PINHOLE"
    """--refine-camera-model."""
    output: Path = RESULTS
    """JSON list of result rows; a row with the same frames, size, device kind and options is replaced."""


def scene_texture() -> np.ndarray:
    """[H, W, 3] uint8: the photographs tiled into one texture."""
    from skimage import data

    tiles = []
    for name in PHOTOS:
        photo = np.asarray(getattr(data, name)())
        photo = np.repeat(photo[..., None], 3, axis=2) if photo.ndim == 2 else photo[..., :3]
        tiles.append(np.asarray(Image.fromarray(photo).resize(TILE, Image.Resampling.BICUBIC)))
    columns, rows = TEXTURE_GRID
    return np.concatenate([np.concatenate(tiles[r * columns : (r + 1) * columns], axis=1) for r in range(rows)])


def view_camera(
    index: int, frames: int, size: tuple[int, int], texture_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(3x3 intrinsic, 3x4 OpenCV camera-from-plane pose) of frame ``index``: a camera circling over the plane
    (two turns over the whole run), yawing and tilting a little, focal length 0.8 x image width. Plane
    coordinates are texture pixels (X, Y) with the plane at Z = 0; the camera looks along +Z."""
    width, height = size
    texture_width, texture_height = texture_size
    angle = 4 * np.pi * index / max(frames, 1)
    centre = np.array(
        [
            texture_width / 2 + 0.2 * texture_width * np.cos(angle),
            texture_height / 2 + 0.2 * texture_height * np.sin(angle),
        ]
    )
    distance = HEIGHT_OVER_PLANE * texture_width / 2
    yaw, tilt = 0.3 * np.sin(angle / 2), np.deg2rad(8) * np.sin(3 * angle)
    rotation = _rotation_z(yaw) @ _rotation_x(tilt)
    focal = 0.8 * width
    intrinsic = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    translation = -rotation @ np.array([centre[0], centre[1], -distance])
    return intrinsic, np.column_stack([rotation, translation])


def view_homography(index: int, frames: int, size: tuple[int, int], texture_size: tuple[int, int]) -> np.ndarray:
    """3x3 map from image pixels to texture pixels of frame ``index`` (the plane seen through ``view_camera``)."""
    intrinsic, pose = view_camera(index, frames, size, texture_size)
    texture_to_image = intrinsic @ pose[:, [0, 1, 3]]
    image_to_texture = np.linalg.inv(texture_to_image)
    return image_to_texture / image_to_texture[2, 2]


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def generate_views(folder: Path, frames: int, width: int, height: int, quality: int) -> list[Path]:
    """``frames`` JPEG views view_00000.jpg, ... of the textured plane in ``folder`` (``write_jpegs``)."""
    texture = Image.fromarray(scene_texture())

    def render(index: int) -> Image.Image:
        homography = view_homography(index, frames, (width, height), texture.size)
        return texture.transform(
            (width, height), Image.Transform.PERSPECTIVE, tuple(homography.reshape(-1)[:8]), Image.Resampling.BICUBIC
        )

    return write_jpegs(folder, "view", frames, (width, height), quality, render)


def main(settings: RefineBenchmark) -> dict[str, Any]:
    """Run the command with --refine once on the generated views (after the warm-up run); returns the row
    written to ``settings.output``."""
    import torch

    started = time.perf_counter()
    images = settings.work_dir / "images"
    paths = generate_views(images, settings.frames, settings.width, settings.height, settings.jpeg_quality)
    generate_seconds = time.perf_counter() - started
    device = settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = settings.checkpoint or settings.work_dir / "checkpoint"
    if settings.random_checkpoint and not (checkpoint / "model.safetensors").is_file():
        write_random_checkpoint(checkpoint, device)
    refinement = RefineConfig(
        refine=True,
        refine_max_image_size=settings.max_image_size,
        refine_max_features=settings.max_features,
        refine_camera_model=settings.camera_model,
        refine_device="cuda" if device == "cuda" else "cpu",
    )
    run_warmup(paths, checkpoint, device, settings, refinement)
    output_dir = settings.work_dir / "out"
    log, whole = run_command(images, output_dir, checkpoint, device, settings, refinement)
    figures = json.loads((output_dir / SUMMARY_FILE).read_text())["refinement"]
    seconds = log.seconds()

    row = {
        **scene_and_machine(settings, device),
        "max_image_size": settings.max_image_size,
        "max_features": settings.max_features,
        "camera_model": settings.camera_model,
        "whole_s": round(whole, 3),
        "model_s": round(seconds["inference"], 3),
        "refine_s": round(seconds["refine"], 3),
        "refine_split_s": rounded(figures["seconds"]),
        "stages_s": rounded(seconds),
        "refinement": {key: value for key, value in figures.items() if key != "seconds"},
        "generate_images_s": round(generate_seconds, 3),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    print(json.dumps(row, indent=1))
    key = ("frames", "width", "height", "device", "neighbors", "max_image_size", "max_features", "camera_model")
    merge_row(settings.output, row, key)
    return row


if __name__ == "__main__":
    import tyro  # only the command line needs it

    main(tyro.cli(RefineBenchmark))
