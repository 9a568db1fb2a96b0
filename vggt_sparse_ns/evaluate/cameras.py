"""Camera sets from transforms.json or a COLMAP model, in one convention: camera-from-world, OpenCV axes.

transforms.json holds camera-to-world with OpenGL camera axes in a world that the converter turned by
``applied_transform`` (docs/conventions.md); it is undone here, so a transforms.json that nerfstudio's
COLMAP converter made from a model gives that model's poses back exactly. COLMAP models (binary or text)
are read with pycolmap; only registered images count. Focal lengths are kept in the pixels of each set's own
image size; distortion parameters are not compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vggt_sparse_ns.evaluate.errors import EvaluationError

TRANSFORMS_FILE = "transforms.json"
COLMAP_MODEL_FOLDERS = ("colmap/sparse/0", "sparse/0")
"""Where a dataset or COLMAP project folder keeps its model, tried in this order after the folder itself."""
OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class CameraSet:
    """Posed cameras of one reconstruction, in the order the file lists them."""

    names: tuple[str, ...]
    """Image file names as the file spells them (e.g. images/frame_00001.png)."""
    T_camera_world: np.ndarray
    """(N, 3, 4) float64 camera-from-world, OpenCV camera axes (x right, y down, z forward)."""
    focal_lengths: np.ndarray
    """(N, 2) float64 (fx, fy) in pixels of the image size below."""
    sizes: np.ndarray
    """(N, 2) int64 image (width, height) in pixels."""
    source: str
    """What was read, for messages and reports (e.g. "transforms.json /data/out/transforms.json")."""

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, indices: np.ndarray) -> CameraSet:
        """The cameras at ``indices``, in that order."""
        return CameraSet(
            names=tuple(self.names[i] for i in indices),
            T_camera_world=self.T_camera_world[indices],
            focal_lengths=self.focal_lengths[indices],
            sizes=self.sizes[indices],
            source=self.source,
        )


def load_cameras(path: Path) -> CameraSet:
    """The cameras of a transforms.json or a COLMAP model.

    Args:
        path: a transforms.json file; a folder holding one (it wins over a COLMAP model beside it); a COLMAP model
            folder (cameras, images, points3D as .bin or .txt); or a folder holding one at colmap/sparse/0 or
            sparse/0 (an ns-process-data output, a COLMAP project).

    Returns:
        The posed cameras, camera-from-world with OpenCV axes.

    Raises:
        EvaluationError: the path does not exist, holds neither, or its file cannot be read.

    Example:
        >>> cameras = load_cameras(Path("out"))  # doctest: +SKIP
        >>> cameras.T_camera_world.shape  # doctest: +SKIP
        (120, 3, 4)
    """
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"{path} does not exist")
    if path.is_file():
        return read_transforms_json(path)
    if (path / TRANSFORMS_FILE).is_file():
        return read_transforms_json(path / TRANSFORMS_FILE)
    for folder in (path, *(path / relative for relative in COLMAP_MODEL_FOLDERS)):
        if _is_colmap_model(folder):
            return read_colmap_model(folder)
    raise EvaluationError(
        f"{path} holds neither a transforms.json nor a COLMAP model (cameras, images and points3D as .bin or .txt, "
        f"in the folder itself or in {' or '.join(COLMAP_MODEL_FOLDERS)})"
    )


def _is_colmap_model(folder: Path) -> bool:
    return any(all((folder / f"{part}.{ext}").is_file() for part in ("cameras", "images")) for ext in ("bin", "txt"))


def read_colmap_model(folder: Path) -> CameraSet:
    """The registered images of a COLMAP model folder (binary or text), read with pycolmap."""
    import pycolmap  # here: reading transforms.json and `--help` need no pycolmap

    try:
        reconstruction = pycolmap.Reconstruction(folder)
    except (ValueError, RuntimeError) as error:
        raise EvaluationError(f"cannot read the COLMAP model in {folder}: {error}") from error
    images = sorted((image for image in reconstruction.images.values() if image.has_pose), key=lambda i: i.image_id)
    cameras = [reconstruction.cameras[image.camera_id] for image in images]
    poses = [image.cam_from_world().matrix() for image in images]
    return CameraSet(
        names=tuple(image.name for image in images),
        T_camera_world=np.array(poses, dtype=np.float64).reshape(len(images), 3, 4),
        focal_lengths=np.array([(c.focal_length_x, c.focal_length_y) for c in cameras]).reshape(len(images), 2),
        sizes=np.array([(c.width, c.height) for c in cameras], dtype=np.int64).reshape(len(images), 2),
        source=f"COLMAP model {folder}",
    )


def read_transforms_json(file: Path) -> CameraSet:
    """The frames of a nerfstudio transforms.json, with its ``applied_transform`` undone (identity when absent)."""
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvaluationError(f"cannot read {file}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise EvaluationError(f"{file} is not a nerfstudio transforms.json: it has no list of frames")
    try:
        T_saved_world = _homogeneous(data.get("applied_transform", np.eye(4)[:3]))
        T_world_saved = np.linalg.inv(T_saved_world)
        names, poses, focal_lengths, sizes = [], [], [], []
        for index, frame in enumerate(data["frames"]):
            value = _frame_reader(file, index, frame, data)
            names.append(str(value("file_path")))
            T_saved_camera_opengl = _homogeneous(value("transform_matrix"))
            poses.append(_camera_from_world(T_world_saved @ T_saved_camera_opengl @ OPENGL_FROM_OPENCV))
            focal_lengths.append((float(value("fl_x")), float(value("fl_y"))))
            sizes.append((int(value("w")), int(value("h"))))
    except (TypeError, ValueError, np.linalg.LinAlgError) as error:
        raise EvaluationError(f"{file} holds an invalid value: {error}") from error
    return CameraSet(
        names=tuple(names),
        T_camera_world=np.array(poses, dtype=np.float64).reshape(-1, 3, 4),
        focal_lengths=np.array(focal_lengths, dtype=np.float64).reshape(-1, 2),
        sizes=np.array(sizes, dtype=np.int64).reshape(-1, 2),
        source=f"transforms.json {file}",
    )


def _frame_reader(file: Path, index: int, frame: Any, data: dict[str, Any]):
    """A lookup of one frame's value that falls back on the top level (nerfstudio's rule for intrinsics)."""
    if not isinstance(frame, dict):
        raise EvaluationError(f"{file}: frame {index} is not an object")

    def value(key: str) -> Any:
        if key in frame:
            return frame[key]
        if key in data and key not in ("file_path", "transform_matrix"):
            return data[key]
        raise EvaluationError(f"{file}: frame {index} ({frame.get('file_path', 'no file_path')}) has no {key!r}")

    return value


def _homogeneous(matrix: Any) -> np.ndarray:
    """A 4x4 matrix from a 3x4 or 4x4 nested list."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape not in ((3, 4), (4, 4)) or not np.isfinite(matrix).all():
        raise ValueError(f"expected a finite 3x4 or 4x4 matrix, got shape {matrix.shape}")
    return np.vstack([matrix[:3], [0.0, 0.0, 0.0, 1.0]])


def _camera_from_world(T_world_camera: np.ndarray) -> np.ndarray:
    """3x4 camera-from-world of a 4x4 camera-to-world whose rotation block may carry a uniform scale or rounding
    (some converters write such matrices): the rotation is the nearest one, the centre is kept."""
    u, singular_values, vt = np.linalg.svd(T_world_camera[:3, :3])
    rotation = u @ vt
    if np.linalg.det(rotation) < 0 or singular_values.min() <= 1e-9 * singular_values.max():
        raise ValueError("a camera's transform_matrix is not a rotation (it mirrors or collapses an axis)")
    rotation_camera_world = rotation.T
    return np.concatenate([rotation_camera_world, -rotation_camera_world @ T_world_camera[:3, 3:]], axis=1)
