"""``refine()`` alone on the refine benchmark's generated views, with known cameras: where its time goes as the
frame count grows, and how far it moves the cameras towards the truth.

The views are benchmarks/refine.py's (a camera circling over a plane papered with photographs); the
prediction is their exact cameras perturbed (rotations 1-3 degrees, positions 3-5 % of the plane's width,
focal lengths up to 5 %), and the frame graph links each frame with its ``--neighbors`` nearest cameras (a
stand-in for covisibility attention's graph). No model runs, so the refinement does not fall back on garbage
cameras and every stage does its full work. Depth is not given (refine() must not need it) unless ``--depth``
asks for the plane's true depth maps, as VGGT always predicts depth: the depth prior's passes then run too.

    python -m benchmarks.refine_stages --frames 100 --width 960 --height 540 --work-dir /tmp/refine-stages

GPU machine (matching there; the row goes to docs/benchmarks/refine_stages.json):

    python -m benchmarks.refine_stages --frames 1000 --device cuda --work-dir /tmp/refine-stages

``--profile PATH`` also writes cProfile's statistics of refine() in this process (SIFT runs in workers) to PATH
and prints its 25 most expensive functions.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.process_data import GeneratedJpegs, merge_row, rounded
from benchmarks.refine import generate_views, known_cameras, nearest_camera_edges, perturbed, scene_texture, view_camera
from vggt_sparse_ns.evaluate.metrics import camera_centres
from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.refine import RefineConfig, refine
from vggt_sparse_ns.refine.config import CameraModelName, FeatureChoice, RefineDevice, SolverChoice

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "refine_stages.json"
MODEL_DOWNSCALE = 8
"""The stand-in model input is the image shrunk this many times (the depth maps' resolution with ``--depth``)."""


@dataclass(frozen=True)
class RefineStagesBenchmark(GeneratedJpegs):
    """Settings of one timed refine() on generated views with known cameras."""

    work_dir: Path = Path("/tmp/vggt-refine-stages")
    """Holds images_<width>x<height>_<frames>/ (the views, kept between runs)."""
    neighbors: int = 16
    """Frame-graph edges per frame: its nearest cameras."""
    max_image_size: int = 1600
    """--refine-max-image-size."""
    max_features: int = 4096
    """--refine-max-features."""
    points_per_frame: int = RefineConfig.refine_points_per_frame
    """--refine-points-per-frame."""
    depth: bool = False
    """Give the prediction the plane's true depth maps (model resolution), so that the depth prior's passes run."""
    depth_points_per_frame: int = RefineConfig.refine_depth_points_per_frame
    """--refine-depth-points-per-frame."""
    camera_model: CameraModelName = "PINHOLE"
    """--refine-camera-model."""
    device: RefineDevice = "cpu"
    """--refine-device (where descriptors are matched, tracks triangulated and selected, and SIFT runs with
    --features torch)."""
    features: FeatureChoice = "auto"
    """--refine-features: which SIFT (auto: torch on cuda or mps, pycolmap on the CPU)."""
    solver: SolverChoice = "auto"
    """--refine-solver: which solves the bundle adjustment (auto: torch on cuda, Ceres otherwise)."""
    seed: int = 0
    """Seed of the perturbation."""
    profile: Path | None = None
    """Write cProfile's statistics of refine() here (pstats format) and print the top of them."""
    output: Path | None = RESULTS
    """JSON list of result rows to add this run's row to (a row with the same settings is replaced); None:
    print only."""


def plane_depth(frames: int, size: tuple[int, int], transform: ImageTransform) -> np.ndarray:
    """[S, H, W] depth of the plane at each model pixel's centre of the generated views, in the units of
    ``known_cameras`` (the plane's width)."""
    texture_height, texture_width = scene_texture().shape[:2]
    width, height = transform.model_size
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pixels = np.stack([cols / transform.scale[0], rows / transform.scale[1], np.ones_like(cols)], axis=-1)
    depth = np.empty((frames, height, width), np.float32)
    for index in range(frames):
        intrinsic, pose = view_camera(index, frames, size, (texture_width, texture_height))
        rotation, translation = pose[:, :3], pose[:, 3]
        # A pixel's point at depth d is R^T (d K^-1 p - t) in plane coordinates; on the plane its Z is 0.
        rays_z = (pixels @ np.linalg.inv(intrinsic).T) @ rotation[:, 2]
        depth[index] = (rotation.T @ translation)[2] / rays_z / texture_width
    return depth


def prediction(
    paths: list[Path], size: tuple[int, int], neighbors: int, seed: int, depth: bool = False
) -> tuple[Reconstruction, np.ndarray]:
    """(the perturbed Reconstruction of the views, with the plane's true depth maps or none, [S, 3, 4] true
    poses)."""
    frames = len(paths)
    truth, intrinsics = known_cameras(frames, size)
    poses, focal = perturbed(truth, intrinsics, seed)
    model_size = (size[0] // MODEL_DOWNSCALE, size[1] // MODEL_DOWNSCALE)
    transform = ImageTransform(size, model_size, (0, 0), (0, 0), model_size)
    to_model = np.diag([transform.scale[0], transform.scale[1], 1.0])
    width, height = model_size
    reconstruction = Reconstruction(
        image_paths=paths,
        transforms=[transform] * frames,
        T_camera_world=poses.astype(np.float32),
        intrinsics=(to_model @ focal).astype(np.float32),
        depth=plane_depth(frames, size, transform) if depth else np.zeros((frames, height, width), np.float32),
        depth_conf=np.ones((frames, height, width), np.float32),
        colors=np.full((frames, height, width, 3), 128, np.uint8),
        graph_edges=nearest_camera_edges(truth, neighbors),
    )
    return reconstruction, truth


def _median_errors(T_camera_world: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(median rotation error in degrees, median centre error in units) over frames 1..S-1."""
    relative = np.einsum("sij,skj->sik", T_camera_world[1:, :, :3].astype(np.float64), truth[1:, :, :3])
    angles = np.rad2deg(np.arccos(np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    offsets = camera_centres(T_camera_world[1:].astype(np.float64)) - camera_centres(truth[1:])
    return float(np.median(angles)), float(np.median(np.linalg.norm(offsets, axis=1)))


def main(settings: RefineStagesBenchmark) -> dict[str, Any]:
    """Generate (or reuse) the views, refine the perturbed prediction once; returns (and prints) the row."""
    size = (settings.width, settings.height)
    folder = settings.work_dir / f"images_{settings.width}x{settings.height}_{settings.frames}"
    paths = generate_views(folder, settings.frames, settings.width, settings.height, settings.jpeg_quality)
    predicted, truth = prediction(paths, size, settings.neighbors, settings.seed, settings.depth)
    config = RefineConfig(
        refine=True,
        refine_max_image_size=settings.max_image_size,
        refine_max_features=settings.max_features,
        refine_points_per_frame=settings.points_per_frame,
        refine_depth_points_per_frame=settings.depth_points_per_frame,
        refine_camera_model=settings.camera_model,
        refine_device=settings.device,
        refine_features=settings.features,
        refine_solver=settings.solver,
    )
    profiler = cProfile.Profile() if settings.profile is not None else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    refined = refine(predicted, config)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.dump_stats(settings.profile)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    figures = refined.refinement
    rotation_before, position_before = _median_errors(predicted.T_camera_world, truth)
    rotation_after, position_after = _median_errors(refined.T_camera_world, truth)
    row = {
        "frames": settings.frames,
        "width": settings.width,
        "height": settings.height,
        "neighbors": settings.neighbors,
        "max_image_size": settings.max_image_size,
        "max_features": settings.max_features,
        "points_per_frame": settings.points_per_frame,
        "depth": settings.depth,
        "depth_points_per_frame": settings.depth_points_per_frame,
        "camera_model": settings.camera_model,
        "device": settings.device,
        "features": figures["feature_extractor"],
        "bundle_adjuster": figures["bundle_adjuster"],
        "cpus": len(os.sched_getaffinity(0)),
        "refine_s": round(seconds, 3),
        "refine_split_s": rounded(figures["seconds"]),
        "median_rotation_error_deg": [round(rotation_before, 4), round(rotation_after, 4)],
        "median_position_error": [round(position_before, 5), round(position_after, 5)],
        "refinement": {key: value for key, value in figures.items() if key not in ("seconds", "kept_frames")},
        "kept_frames": len(figures["kept_frames"]),
    }
    print(json.dumps(row, indent=1))
    if settings.output is not None:
        key = ("frames", "width", "height", "neighbors", "max_image_size", "max_features", "points_per_frame")
        merge_row(
            settings.output,
            row,
            key + ("camera_model", "device", "features", "depth", "depth_points_per_frame", "bundle_adjuster"),
        )
    return row


if __name__ == "__main__":
    import tyro  # only the command line needs it

    main(tyro.cli(RefineStagesBenchmark))
