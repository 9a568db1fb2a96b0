"""From an `ns-process-data vggt-sparse` output folder to arrays the viewer draws (no server, no network).

Everything stays in the world frame of transforms.json, the frame nerfstudio's viewer uses. Poses there
are camera-to-world with OpenGL camera axes; viser draws frustums with OpenCV axes (x right, y down,
z forward), so `T_world_camera` here is converted once: OpenCV axes = OpenGL axes with y and z negated.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from vggt_sparse_ns.export.geometry import OPENGL_FROM_OPENCV_CAMERA
from vggt_sparse_ns.export.ply import PlyReadError, read_ply
from vggt_sparse_ns.images import ImageLoadError, decoding_slot, open_image
from vggt_sparse_ns.output_layout import GRAPH_FILE, IMAGES_DIR, SUMMARY_FILE, TRANSFORMS_FILE, downscaled_images_dir
from vggt_sparse_ns.viewer.config import ViewerConfig
from vggt_sparse_ns.viewer.errors import ReconstructionFolderError

DOWNSCALE_FOLDERS = tuple(downscaled_images_dir(level) for level in (3, 2, 1))
"""images_8, images_4, images_2: the smallest first."""
SUBSAMPLE_SEED = 0
MIN_FRUSTUM_EXTENT = 0.015
DEFAULT_CONFIG = ViewerConfig()


@dataclass(frozen=True)
class SceneData:
    """What the viewer shows, as plain arrays."""

    output_dir: Path
    points: np.ndarray
    """(N, 3) float32, at most --max-points of the PLY's finite points."""
    colours: np.ndarray
    """(N, 3) uint8 RGB."""
    confidences: np.ndarray | None
    """(N,) float32 from the PLY's `confidence` property; None when it has none."""
    total_points: int
    """Points in the PLY before the --max-points cap (and before dropping non-finite ones)."""
    T_world_camera: np.ndarray
    """(S, 4, 4) camera-to-world with OpenCV camera axes, in the transforms.json world frame."""
    vertical_fov: np.ndarray
    """(S,) radians."""
    aspect: np.ndarray
    """(S,) width over height."""
    image_names: list[str]
    image_files: list[tuple[Path, ...]]
    """Each camera's existing image files, smallest downscale first (empty where none exists)."""
    thumbnails: list[np.ndarray | None]
    """Each camera's (h, w, 3) uint8 image, from the smallest downscale at least the thumbnail size; None if missing."""
    edges: np.ndarray | None
    """(E, 2) int64 covisibility graph edges (frame indices, i < j); None without a graph (dense attention)."""
    summary: dict[str, Any] | None
    frustum_scale: float
    scene_centre: np.ndarray
    """(3,) middle of the scene's bounding box."""
    scene_extent: float
    """Rough diameter of the scene (robust to outlying points)."""
    up_direction: np.ndarray
    """(3,) unit mean camera up vector: the direction the viewer keeps up."""

    @property
    def camera_centres(self) -> np.ndarray:
        """(S, 3) camera positions in the world frame."""
        return self.T_world_camera[:, :3, 3]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReconstructionFolderError(f"cannot read {what} {path}: {error}") from error


def _intrinsic(frame: dict, transforms: dict, key: str, index: int) -> float:
    value = frame.get(key, transforms.get(key))
    if value is None:
        raise ReconstructionFolderError(f"transforms.json: frame {index} has no '{key}' (neither per frame nor global)")
    return float(value)


def image_files(root: Path, file_path: str) -> tuple[Path, ...]:
    """The existing files of one frame's image, smallest first: images_8, images_4, images_2, then file_path itself."""
    relative = PurePosixPath(file_path)
    candidates = []
    if relative.parts and relative.parts[0] == IMAGES_DIR:
        candidates = [root / folder / Path(*relative.parts[1:]) for folder in DOWNSCALE_FOLDERS]
    candidates.append(root / relative)
    return tuple(path for path in candidates if path.is_file())


def load_image(files: tuple[Path, ...], max_side: int) -> np.ndarray | None:
    """RGB uint8 image from the smallest file at least max_side large (else the largest), shrunk to max_side.

    None when no file can be read.
    """
    for index, path in enumerate(files):
        try:
            with open_image(path) as image, decoding_slot(image):
                if max(image.size) < max_side and index < len(files) - 1:
                    continue
                image.draft("RGB", (max_side, max_side))
                image = image.convert("RGB")
                image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
                return np.asarray(image)
        except (OSError, ImageLoadError):
            continue
    return None


def frustum_scale(camera_centres: np.ndarray, scene_extent: float, fraction: float) -> float:
    """`fraction` of the median nearest-neighbour camera distance, but at least MIN_FRUSTUM_EXTENT of the scene.

    The floor keeps frustums visible along dense video paths; a single camera gets a tenth of the extent.
    """
    extent = max(scene_extent, 1e-6)
    if len(camera_centres) < 2:
        return fraction * 0.1 * extent
    nearest = np.empty(len(camera_centres))
    for start in range(0, len(camera_centres), 512):
        block = camera_centres[start : start + 512]
        distance = np.linalg.norm(block[:, None, :] - camera_centres[None, :, :], axis=-1)
        distance[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest[start : start + len(block)] = distance.min(axis=1)
    return max(fraction * float(np.median(nearest)), MIN_FRUSTUM_EXTENT * extent)


def _read_points(
    root: Path, transforms: dict, max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    ply_name = transforms.get("ply_file_path")
    if not ply_name:
        raise ReconstructionFolderError(f"{root / TRANSFORMS_FILE} has no 'ply_file_path': no point cloud to show")
    try:
        vertices = read_ply(root / ply_name)
    except PlyReadError as error:
        raise ReconstructionFolderError(f"{error} (transforms.json names it in 'ply_file_path')") from None
    if not {"x", "y", "z"} <= vertices.keys():
        raise ReconstructionFolderError(f"point cloud {root / ply_name} lacks x, y, z vertex properties")
    points = np.stack([vertices[axis] for axis in "xyz"], axis=1).astype(np.float32)
    total = len(points)
    if {"red", "green", "blue"} <= vertices.keys():
        colours = np.stack([vertices[channel] for channel in ("red", "green", "blue")], axis=1)
        if colours.dtype.kind == "f":
            colours = colours * 255.0
        colours = np.clip(colours, 0, 255).astype(np.uint8)
    else:
        colours = np.full((total, 3), 160, dtype=np.uint8)
    confidences = vertices["confidence"].astype(np.float32) if "confidence" in vertices else None

    keep = np.flatnonzero(np.isfinite(points).all(axis=1))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(SUBSAMPLE_SEED).choice(keep, size=max_points, replace=False))
    points, colours = points[keep], colours[keep]
    return points, colours, None if confidences is None else confidences[keep], total


def _is_index_pair(pair: Any) -> bool:
    return isinstance(pair, list) and len(pair) == 2 and all(isinstance(index, int) for index in pair)


def _read_edges(root: Path, count: int) -> np.ndarray | None:
    path = root / GRAPH_FILE
    if not path.is_file():
        return None
    graph = _read_json(path, "the covisibility graph")
    if isinstance(graph, dict) and graph.get("dense") is True:
        return None  # dense attention: every frame attended to every other, no graph to draw
    pairs = graph.get("edges") if isinstance(graph, dict) else None
    if not isinstance(pairs, list) or not all(map(_is_index_pair, pairs)):
        raise ReconstructionFolderError(f'{path}: expected {{"edges": [[i, j], ...]}} with integer frame indices')
    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(edges) == 0:
        return edges
    if edges.min() < 0 or edges.max() >= count or np.any(edges[:, 0] == edges[:, 1]):
        raise ReconstructionFolderError(
            f"{path}: edges must join two different frames among the {count} in transforms.json"
        )
    return np.unique(np.sort(edges, axis=1), axis=0)


def load_scene(output_dir: Path, config: ViewerConfig = DEFAULT_CONFIG) -> SceneData:
    """Reads the output folder into a SceneData; a missing or malformed file raises ReconstructionFolderError."""
    root = Path(output_dir)
    if not root.is_dir():
        raise ReconstructionFolderError(f"output folder not found: {root}")
    transforms_path = root / TRANSFORMS_FILE
    if not transforms_path.is_file():
        raise ReconstructionFolderError(
            f"no transforms.json in {root}: pass the output folder of `ns-process-data vggt-sparse`"
        )
    transforms = _read_json(transforms_path, "the camera file")
    frames = transforms.get("frames") if isinstance(transforms, dict) else None
    if not frames:
        raise ReconstructionFolderError(f"{transforms_path} lists no frames")

    try:
        T_world_camera = np.asarray([frame["transform_matrix"] for frame in frames], dtype=np.float64)
    except (KeyError, ValueError) as error:
        raise ReconstructionFolderError(f"{transforms_path}: every frame needs a 4x4 'transform_matrix'") from error
    if T_world_camera.shape[1:] != (4, 4):
        raise ReconstructionFolderError(f"{transforms_path}: every frame needs a 4x4 'transform_matrix'")
    T_world_camera[:, :, :3] = T_world_camera[:, :, :3] @ OPENGL_FROM_OPENCV_CAMERA  # its own inverse
    heights = np.array([_intrinsic(frame, transforms, "h", index) for index, frame in enumerate(frames)])
    widths = np.array([_intrinsic(frame, transforms, "w", index) for index, frame in enumerate(frames)])
    focal_y = np.array([_intrinsic(frame, transforms, "fl_y", index) for index, frame in enumerate(frames)])

    points, colours, confidences, total = _read_points(root, transforms, config.max_points)
    centres = T_world_camera[:, :3, 3]
    everything = np.concatenate([points, centres]) if len(points) else centres
    low, high = np.percentile(everything, [2, 98], axis=0)
    extent = float(np.linalg.norm(high - low)) or 1.0
    up = -T_world_camera[:, :3, 1].mean(axis=0)
    up = up / np.linalg.norm(up) if np.linalg.norm(up) > 1e-6 else np.array([0.0, 0.0, 1.0])

    files = [image_files(root, frame.get("file_path", "")) for frame in frames]
    with ThreadPoolExecutor(max_workers=4) as pool:
        thumbnails = list(pool.map(lambda paths: load_image(paths, config.thumbnail_size), files))

    summary_path = root / SUMMARY_FILE
    summary = _read_json(summary_path, "the run summary") if summary_path.is_file() else None
    if summary is not None and not isinstance(summary, dict):
        raise ReconstructionFolderError(f"{summary_path} must hold a JSON object")

    return SceneData(
        output_dir=root,
        points=points,
        colours=colours,
        confidences=confidences,
        total_points=total,
        T_world_camera=T_world_camera,
        vertical_fov=2.0 * np.arctan(heights / (2.0 * focal_y)),
        aspect=widths / heights,
        image_names=[
            PurePosixPath(frame.get("file_path", f"frame {index}")).name for index, frame in enumerate(frames)
        ],
        image_files=files,
        thumbnails=thumbnails,
        edges=_read_edges(root, len(frames)),
        summary=summary,
        frustum_scale=frustum_scale(centres, extent, config.frustum_size),
        scene_centre=(low + high) / 2.0,
        scene_extent=extent,
        up_direction=up,
    )
