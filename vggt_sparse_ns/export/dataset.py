"""One call that turns a reconstruction into a nerfstudio dataset folder (images already in place)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from vggt_sparse_ns.export.colmap import write_colmap
from vggt_sparse_ns.export.config import ExportConfig, ExportError
from vggt_sparse_ns.export.depth import write_depth_maps
from vggt_sparse_ns.export.geometry import common_intrinsic, full_resolution_intrinsics
from vggt_sparse_ns.export.nerfstudio import transforms_dict, write_transforms
from vggt_sparse_ns.export.ply import write_ply
from vggt_sparse_ns.export.points import PointCloud, build_point_cloud, confident_pixels
from vggt_sparse_ns.export.refined import ply_arrays, refined_colmap_points, shares_distortion
from vggt_sparse_ns.export.run_info import write_graph
from vggt_sparse_ns.images import ImageLoadError, ImageTransform, open_image
from vggt_sparse_ns.output_layout import COLMAP_MODEL_DIR, DEPTH_DIR, PLY_FILE, TRANSFORMS_FILE
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.timing import StageTimer


@dataclass(frozen=True)
class ExportSummary:
    """What was written, for the run summary and the final message; paths are relative to the dataset folder
    (the summary stays true when the folder moves, e.g. from a staging folder into place)."""

    num_frames: int
    num_points: int
    point_source: str
    confidence_threshold: float
    voxel_size: float
    """0 when no downsampling was needed."""
    shared_intrinsics: bool
    ply_file: str
    depth_dir: str | None
    depth_unit_scale_factor: float | None
    """Pass as the nerfstudio-data dataparser's --depth-unit-scale-factor (None without depth)."""
    colmap_dir: str | None
    seconds: float

    @property
    def depth_flag(self) -> str | None:
        """The ns-train arguments that make nerfstudio read the depth maps in the right units."""
        if self.depth_unit_scale_factor is None:
            return None
        return f"nerfstudio-data --depth-unit-scale-factor {self.depth_unit_scale_factor!r}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "depth_flag": self.depth_flag}


def export_dataset(
    reconstruction: Reconstruction,
    output_dir: Path,
    image_names: Sequence[str],
    config: ExportConfig,
    *,
    num_downscales: int = 0,
    image_root: Path | None = None,
    log: StageTimer | None = None,
    device: torch.device | str = "cpu",
) -> ExportSummary:
    """Write sparse_pc.ply, depth maps (config.depth), the COLMAP model (config.colmap),
    vggt/graph.json and, last and atomically, transforms.json into ``output_dir``.

    ``image_names[i]`` is frame i's image, relative to ``image_root`` (default ``output_dir``; e.g.
    images/frame_00001.png), already written there at full resolution, upright (EXIF orientation applied):
    ``image_root`` is the dataset's final folder when ``output_dir`` is a staging folder and the images are
    already in place. ``num_downscales`` matches the images_2/4/... folders (depth maps get depths_2/4/...).
    ``log`` times the stages "point cloud", "write ply", "depth maps", "colmap model" and "transforms.json".
    The point cloud is built and depth maps are resampled on ``device`` (the reconstruction's).
    """
    started = time.perf_counter()
    log = log or StageTimer()
    output_dir = Path(output_dir)
    with log.stage("point cloud"):
        _check_inputs(reconstruction, image_root or output_dir, image_names, config)
        # transforms.json is written last, so a failed export never leaves one next to partial outputs.
        (output_dir / TRANSFORMS_FILE).unlink(missing_ok=True)
        point_pixels = confident_pixels(reconstruction, config.point_source, config, device=device)
        points = build_point_cloud(reconstruction, point_pixels, config.max_points, device=device)
    with log.stage("write ply"):
        write_ply(output_dir / PLY_FILE, *ply_arrays(points, reconstruction.sparse_points))
    intrinsics = full_resolution_intrinsics(reconstruction.intrinsics, reconstruction.transforms)
    sizes = [t.original_size for t in reconstruction.transforms]
    shared = common_intrinsic(intrinsics, sizes)

    depth_maps = None
    if config.depth:
        with log.stage("depth maps"):
            stems = [PurePosixPath(name).stem for name in image_names]
            depth_pixels = (
                point_pixels
                if point_pixels.source == "depth"
                else confident_pixels(reconstruction, "depth", config, device=device)
            )
            depth_maps = write_depth_maps(
                reconstruction, output_dir, stems, depth_pixels, config.depth_format, num_downscales, device=device
            )
    if config.colmap:
        with log.stage("colmap model"):
            write_colmap(
                output_dir / COLMAP_MODEL_DIR,
                reconstruction.T_camera_world,
                intrinsics,
                sizes=sizes,
                image_names=[PurePosixPath(name).name for name in image_names],
                shared_intrinsic=shared if shares_distortion(reconstruction.distortion) else None,
                **(
                    refined_colmap_points(reconstruction)
                    or {
                        "xyz": points.xyz,
                        "rgb": points.rgb,
                        "frame": points.frame,
                        "pixel": _full_resolution_pixels(reconstruction.transforms, points),
                    }
                ),
            )
    with log.stage("transforms.json"):
        strategy = reconstruction.attention.get("strategy", "dense")
        write_graph(output_dir, reconstruction.num_frames, reconstruction.graph_edges, strategy)
        summary = ExportSummary(
            num_frames=reconstruction.num_frames,
            num_points=len(points),
            point_source=config.point_source,
            confidence_threshold=points.confidence_threshold,
            voxel_size=points.voxel_size,
            shared_intrinsics=shared is not None,
            ply_file=PLY_FILE,
            depth_dir=DEPTH_DIR if depth_maps else None,
            depth_unit_scale_factor=depth_maps.unit if depth_maps else None,
            colmap_dir=COLMAP_MODEL_DIR if config.colmap else None,
            seconds=time.perf_counter() - started,
        )
        data = transforms_dict(
            reconstruction.T_camera_world,
            intrinsics,
            sizes,
            list(image_names),
            PLY_FILE,
            depth_maps.file_paths if depth_maps else None,
            reconstruction.distortion,
        )
        write_transforms(output_dir, data)
    return summary


def _full_resolution_pixels(transforms: Sequence[ImageTransform], points: PointCloud) -> np.ndarray:
    """Source pixels of the points, from model pixels to the pixels of the full-resolution images."""
    order = np.argsort(points.frame, kind="stable")
    bounds = np.searchsorted(points.frame[order], np.arange(len(transforms) + 1))
    pixels = np.empty((len(points), 2))
    for index, transform in enumerate(transforms):
        members = order[bounds[index] : bounds[index + 1]]
        pixels[members] = transform.model_to_original(points.pixel[members])
    return pixels


def _check_inputs(
    reconstruction: Reconstruction, image_root: Path, image_names: Sequence[str], config: ExportConfig
) -> None:
    frames = reconstruction.num_frames
    if reconstruction.depth.ndim != 3:
        raise ExportError(f"reconstruction.depth must be [S, H, W], not {reconstruction.depth.shape}")
    height, width = reconstruction.depth.shape[1:]
    expected = {
        "depth": (frames, height, width),
        "T_camera_world": (frames, 3, 4),
        "intrinsics": (frames, 3, 3),
        "depth_conf": (frames, height, width),
        "colors": (frames, height, width, 3),
    }
    for name, shape in expected.items():
        if getattr(reconstruction, name).shape != shape:
            raise ExportError(
                f"reconstruction.{name} has shape {getattr(reconstruction, name).shape}, expected {shape}"
            )
    if reconstruction.colors.dtype != np.uint8:
        raise ExportError(f"reconstruction.colors must be uint8, not {reconstruction.colors.dtype}")
    if len(reconstruction.transforms) != frames or any(
        t.model_size != (width, height) for t in reconstruction.transforms
    ):
        raise ExportError(f"reconstruction.transforms must hold {frames} transforms for {width}x{height} model pixels")
    world_points = reconstruction.world_points
    if (
        config.point_source == "points"
        and world_points is not None
        and world_points.shape != (frames, height, width, 3)
    ):
        raise ExportError(f"reconstruction.world_points has shape {world_points.shape}")
    if len(image_names) != frames:
        raise ExportError(f"{len(image_names)} image names for {frames} frames")
    if len(set(image_names)) != frames:
        raise ExportError("image names must be distinct")
    for name, transform in zip(image_names, reconstruction.transforms, strict=True):
        _check_image(image_root, name, transform.original_size)


def _check_image(image_root: Path, name: str, original_size: tuple[int, int]) -> None:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ExportError(f"image name {name!r} must be a path inside the output folder, like images/frame_00001.png")
    path = image_root / relative
    if not path.is_file():
        raise ExportError(f"{path} does not exist: write the images into the output folder before exporting")
    try:
        with open_image(path) as image:  # the header only: the size
            size = image.size
    except ImageLoadError as error:
        raise ExportError(str(error)) from error
    if size != tuple(original_size):
        raise ExportError(
            f"{path} is {size[0]}x{size[1]} pixels but the reconstruction saw {original_size[0]}x{original_size[1]}: "
            "images in the dataset must be the full-resolution images, upright (EXIF orientation applied)"
        )
