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

With ``--perturbed-truth`` the refinement gets the views' exact cameras perturbed instead of the garbage ones, so
that every refine step does its full work, as on cameras that are nearly right (the model still runs):

    python -m benchmarks.refine --work-dir /tmp/refine --random-checkpoint --perturbed-truth

CPU smoke test with the tiny fixture model:

    python -m benchmarks.refine --frames 4 --width 480 --height 270 --work-dir /tmp/refine-smoke --device cpu \\
        --checkpoint tests/fixtures/vggt_tiny --output /tmp/refine.json
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import vggt_sparse_ns.refine
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
from vggt_sparse_ns.evaluate.metrics import camera_centres
from vggt_sparse_ns.output_layout import SUMMARY_FILE
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine.config import CameraModelName, RefineConfig
from vggt_sparse_ns.refine.consistency import to_model_pixels

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
    perturbed_truth: bool = False
    """Hand the refinement the views' exact cameras perturbed as a prediction (``perturbed``: rotations 1-3
    degrees, positions 3-5 % of the plane's width, focal lengths 2-5 %) and their nearest cameras as the frame
    graph, in place of the model's: with random weights its cameras are garbage and the refinement falls back
    without adjusting; this way every refine step does its full work inside the timed command (the model still
    runs, and its depth maps stay)."""
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


def known_cameras(frames: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """([S, 3, 4] camera-from-world poses, [S, 3, 3] intrinsics) of the generated views, world = camera 0's frame
    and one unit = the plane's width (the conventions of a prediction)."""
    texture_height, texture_width = scene_texture().shape[:2]
    intrinsics, poses = zip(
        *(view_camera(i, frames, size, (texture_width, texture_height)) for i in range(frames)), strict=True
    )
    homogeneous = np.concatenate([np.stack(poses), np.tile([[[0.0, 0, 0, 1]]], (frames, 1, 1))], axis=1)
    T_camera_world = (homogeneous @ np.linalg.inv(homogeneous[0]))[:, :3]
    T_camera_world[:, :, 3] /= texture_width
    return T_camera_world, np.stack(intrinsics)


def perturbed(T_camera_world: np.ndarray, intrinsics: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The cameras as a prediction: frame 0 exact, the others rotated 1-3 degrees about a random axis, moved
    3-5 % of a unit in a random direction, focal lengths scaled by 1 +- (2-5 %)."""
    rng = np.random.default_rng(seed)
    poses, focal = T_camera_world.copy(), intrinsics.copy()
    for index in range(1, len(poses)):
        axis = rng.standard_normal(3)
        axis *= np.deg2rad(rng.uniform(1.0, 3.0)) / np.linalg.norm(axis)
        rotation = _rodrigues(axis) @ poses[index, :, :3]
        centre = -poses[index, :, :3].T @ poses[index, :, 3]
        direction = rng.standard_normal(3)
        centre = centre + direction / np.linalg.norm(direction) * rng.uniform(0.03, 0.05)
        poses[index] = np.column_stack([rotation, -rotation @ centre])
        focal[index, :2, :2] *= 1 + rng.choice([-1, 1]) * rng.uniform(0.02, 0.05)
    return poses, focal


def _rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(axis_angle)
    x, y, z = axis_angle / angle
    cross = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def nearest_camera_edges(T_camera_world: np.ndarray, neighbors: int) -> np.ndarray:
    """[E, 2] pairs (i < j): each frame with its ``neighbors`` nearest camera centres."""
    centres = camera_centres(T_camera_world)
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    k = min(neighbors, len(centres) - 1)
    nearest = np.argsort(distances, axis=1)[:, :k]
    pairs = np.sort(np.stack([np.repeat(np.arange(len(centres)), k), nearest.reshape(-1)], axis=1), axis=1)
    return np.unique(pairs, axis=0)


def generate_views(folder: Path, frames: int, width: int, height: int, quality: int) -> list[Path]:
    """``frames`` JPEG views view_00000.jpg, ... of the textured plane in ``folder`` (``write_jpegs``)."""
    texture = Image.fromarray(scene_texture())

    def render(index: int) -> Image.Image:
        homography = view_homography(index, frames, (width, height), texture.size)
        return texture.transform(
            (width, height), Image.Transform.PERSPECTIVE, tuple(homography.reshape(-1)[:8]), Image.Resampling.BICUBIC
        )

    return write_jpegs(folder, "view", frames, (width, height), quality, render)


def perturbed_truth(reconstruction: Reconstruction, views: int, neighbors: int, seed: int = 0) -> Reconstruction:
    """``reconstruction`` (the command's, of some of ``views`` generated views, matched by file name) with the
    views' exact cameras perturbed (``perturbed``, in ``known_cameras``' world: view 0's camera) and a frame graph
    of each frame's ``neighbors`` nearest cameras."""
    indices = [int(Path(path).stem.rsplit("_", 1)[1]) for path in reconstruction.image_paths]
    truth, intrinsics = known_cameras(views, reconstruction.transforms[0].original_size)
    poses, focal = perturbed(truth, intrinsics, seed)
    poses, focal, truth = poses[indices], focal[indices], truth[indices]
    return dataclasses.replace(
        reconstruction,
        T_camera_world=poses.astype(np.float32),
        intrinsics=to_model_pixels(focal, reconstruction.transforms).astype(np.float32),
        graph_edges=nearest_camera_edges(truth, neighbors),
    )


@contextmanager
def _prediction_replaced(settings: RefineBenchmark) -> Iterator[None]:
    """While the command runs, refine() gets ``perturbed_truth`` of its input when ``settings.perturbed_truth``."""
    if not settings.perturbed_truth:
        yield
        return
    refine = vggt_sparse_ns.refine.refine
    vggt_sparse_ns.refine.refine = lambda reconstruction, config=None: refine(
        perturbed_truth(reconstruction, settings.frames, settings.neighbors), config
    )
    try:
        yield
    finally:
        vggt_sparse_ns.refine.refine = refine


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
    with _prediction_replaced(settings):
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
        "perturbed_truth": settings.perturbed_truth,
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
    key = (
        "frames",
        "width",
        "height",
        "device",
        "neighbors",
        "max_image_size",
        "max_features",
        "camera_model",
        "perturbed_truth",
    )
    merge_row(settings.output, row, key)
    return row


if __name__ == "__main__":
    import tyro  # only the command line needs it

    main(tyro.cli(RefineBenchmark))
