"""nerfstudio's transforms.json: cameras in full-resolution pixels, poses in nerfstudio's convention.

The layout follows what ``ns-process-data images`` writes for a COLMAP camera: camera model OPENCV with
``k1 k2 p1 p2`` (zero unless a refinement estimated distortion; nerfstudio undistorts with them); intrinsics
and distortion each global when every frame shares them (else per frame); ``transform_matrix`` camera-to-world with OpenGL camera axes, ``applied_transform`` and
``ply_file_path``. Written last, atomically: a dataset with a transforms.json is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vggt_sparse_ns.export.atomic import write_json_atomic
from vggt_sparse_ns.export.geometry import applied_transform, common_intrinsic, nerfstudio_camera_to_world
from vggt_sparse_ns.output_layout import TRANSFORMS_FILE

CAMERA_MODEL = "OPENCV"
DISTORTION_KEYS = ("k1", "k2", "p1", "p2")
DISTORTION_TOLERANCE = 1e-9
"""Frames whose distortion coefficients agree this closely share them."""


def _intrinsic_fields(intrinsic: np.ndarray, size: tuple[int, int]) -> dict[str, Any]:
    return {
        "fl_x": float(intrinsic[0, 0]),
        "fl_y": float(intrinsic[1, 1]),
        "cx": float(intrinsic[0, 2]),
        "cy": float(intrinsic[1, 2]),
        "w": int(size[0]),
        "h": int(size[1]),
    }


def _distortion_fields(distortion: np.ndarray) -> dict[str, float]:
    return {key: float(value) for key, value in zip(DISTORTION_KEYS, distortion, strict=True)}


def transforms_dict(
    T_camera_world: np.ndarray,
    intrinsics: np.ndarray,
    sizes: Sequence[tuple[int, int]],
    file_paths: Sequence[str],
    ply_file_path: str | None,
    depth_file_paths: Sequence[str] | None = None,
    distortion: np.ndarray | None = None,
) -> dict[str, Any]:
    """The content of transforms.json.

    T_camera_world [S, 3, 4] in VGGT's world (OpenCV axes), intrinsics [S, 3, 3] in pixels of the
    full-resolution images, sizes (w, h) of those images, paths relative to the dataset folder,
    ``distortion`` [S, 4] OpenCV (k1, k2, p1, p2) per frame (None: none).
    """
    count = len(file_paths)
    if not (len(T_camera_world) == len(intrinsics) == len(sizes) == count):
        raise ValueError(
            f"frame counts differ: {len(T_camera_world)} poses, {len(intrinsics)} intrinsics, "
            f"{len(sizes)} sizes, {count} file paths"
        )
    if depth_file_paths is not None and len(depth_file_paths) != count:
        raise ValueError(f"{len(depth_file_paths)} depth files for {count} frames: nerfstudio needs all or none")
    distortion = np.zeros((count, 4)) if distortion is None else np.asarray(distortion, dtype=np.float64)
    shared = common_intrinsic(intrinsics, sizes)
    shared_distortion = not count or np.abs(distortion - distortion[0]).max() <= DISTORTION_TOLERANCE
    data: dict[str, Any] = {"camera_model": CAMERA_MODEL}
    if shared_distortion:
        data.update(_distortion_fields(distortion[0] if count else np.zeros(4)))
    if shared is not None:
        data.update(_intrinsic_fields(shared, sizes[0]))
    camera_to_world = nerfstudio_camera_to_world(T_camera_world)
    frames = []
    for index, file_path in enumerate(file_paths):
        frame: dict[str, Any] = {"file_path": file_path, "transform_matrix": camera_to_world[index].tolist()}
        if shared is None:
            frame.update(_intrinsic_fields(intrinsics[index], sizes[index]))
        if not shared_distortion:
            frame.update(_distortion_fields(distortion[index]))
        if depth_file_paths is not None:
            frame["depth_file_path"] = depth_file_paths[index]
        frames.append(frame)
    data["frames"] = frames
    data["applied_transform"] = applied_transform()
    if ply_file_path is not None:
        data["ply_file_path"] = ply_file_path
    return data


def write_transforms(output_dir: Path, data: dict[str, Any]) -> Path:
    """Write transforms.json into ``output_dir`` atomically; returns its path."""
    return write_json_atomic(output_dir / TRANSFORMS_FILE, data)
