"""A COLMAP sparse model (cameras.bin, images.bin, points3D.bin) in COLMAP's binary format.

Poses are world-to-camera in OpenCV camera axes (COLMAP's convention) in VGGT's world, so COLMAP
consumers, nerfstudio's own COLMAP converter included, apply their usual world change and reach the
same frame as our transforms.json. Cameras are PINHOLE in full-resolution pixels (one shared camera
when all frames share intrinsics, else one per frame). Each point keeps its one true observation:
the pixel it was lifted from (a track of length 1); its error is its reprojection error there.
Written in streaming fashion: memory grows with points and frames, never with frame pairs.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vggt_sparse_ns.export.atomic import atomic_path
from vggt_sparse_ns.export.geometry import project

PINHOLE_MODEL_ID = 1
POINTS_CHUNK = 1_000_000
POINT2D_DTYPE = np.dtype([("x", "<f8"), ("y", "<f8"), ("point3D_id", "<i8")])
POINT3D_DTYPE = np.dtype(
    [
        ("point3D_id", "<u8"),
        ("xyz", "<f8", (3,)),
        ("rgb", "u1", (3,)),
        ("error", "<f8"),
        ("track_length", "<u8"),
        ("image_id", "<i4"),
        ("point2D_idx", "<i4"),
    ]
)


def rotation_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z), w >= 0, of a 3x3 rotation matrix (COLMAP's scalar-first order)."""
    r = np.asarray(rotation, dtype=np.float64)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [(r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4]
    quaternion = np.array(q) / np.linalg.norm(q)
    return -quaternion if quaternion[0] < 0 else quaternion


def write_colmap(
    sparse_dir: Path,
    T_camera_world: np.ndarray,
    intrinsics: np.ndarray,
    *,
    sizes: Sequence[tuple[int, int]],
    image_names: Sequence[str],
    shared_intrinsic: np.ndarray | None,
    xyz: np.ndarray,
    rgb: np.ndarray,
    frame: np.ndarray,
    pixel: np.ndarray,
) -> Path:
    """Write the model into ``sparse_dir`` (e.g. colmap/sparse/0).

    T_camera_world [S, 3, 4] and full-resolution intrinsics [S, 3, 3] per frame, image sizes (w, h),
    names relative to the image folder; ``shared_intrinsic`` (3x3) makes one camera for all frames.
    Points [N, 3] in the same world, colours [N, 3] uint8, source frame [N] and source pixel [N, 2]
    in full-resolution pixels. Image ids are frame index + 1; point ids are point index + 1.
    """
    frame = np.asarray(frame, dtype=np.int64)
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(len(image_names) + 1))
    point2D_index = np.empty(len(frame), dtype=np.int32)
    point2D_index[order] = np.arange(len(order)) - bounds[frame[order]]
    errors = np.zeros(len(frame))
    for index in range(len(image_names)):
        members = order[bounds[index] : bounds[index + 1]]
        projected, _ = project(xyz[members], intrinsics[index], T_camera_world[index])
        errors[members] = np.linalg.norm(projected - pixel[members], axis=-1)

    _write_cameras(sparse_dir / "cameras.bin", intrinsics, sizes, shared_intrinsic)
    _write_images(
        sparse_dir / "images.bin", T_camera_world, image_names, shared_intrinsic is not None, order, bounds, pixel
    )
    _write_points(sparse_dir / "points3D.bin", xyz, rgb, errors, frame, point2D_index)
    return sparse_dir


def _write_cameras(
    path: Path, intrinsics: np.ndarray, sizes: Sequence[tuple[int, int]], shared_intrinsic: np.ndarray | None
) -> None:
    cameras = (
        [(1, shared_intrinsic, sizes[0])]
        if shared_intrinsic is not None
        else [(index + 1, k, size) for index, (k, size) in enumerate(zip(intrinsics, sizes, strict=True))]
    )
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(struct.pack("<Q", len(cameras)))
        for camera_id, k, (width, height) in cameras:
            file.write(struct.pack("<iiQQ", camera_id, PINHOLE_MODEL_ID, width, height))
            file.write(struct.pack("<4d", k[0, 0], k[1, 1], k[0, 2], k[1, 2]))


def _write_images(
    path: Path,
    T_camera_world: np.ndarray,
    image_names: Sequence[str],
    shared_camera: bool,
    order: np.ndarray,
    bounds: np.ndarray,
    pixel: np.ndarray,
) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(struct.pack("<Q", len(image_names)))
        for index, name in enumerate(image_names):
            pose = np.asarray(T_camera_world[index], dtype=np.float64)
            camera_id = 1 if shared_camera else index + 1
            file.write(struct.pack("<i", index + 1))
            file.write(struct.pack("<4d", *rotation_to_quaternion(pose[:, :3])))
            file.write(struct.pack("<3d", *pose[:, 3]))
            file.write(struct.pack("<i", camera_id))
            file.write(name.encode("utf-8") + b"\x00")
            members = order[bounds[index] : bounds[index + 1]]
            observations = np.empty(len(members), dtype=POINT2D_DTYPE)
            observations["x"], observations["y"] = pixel[members, 0], pixel[members, 1]
            observations["point3D_id"] = members + 1
            file.write(struct.pack("<Q", len(members)))
            file.write(observations.tobytes())


def _write_points(
    path: Path, xyz: np.ndarray, rgb: np.ndarray, errors: np.ndarray, frame: np.ndarray, point2D_index: np.ndarray
) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(struct.pack("<Q", len(xyz)))
        for start in range(0, len(xyz), POINTS_CHUNK):
            stop = min(start + POINTS_CHUNK, len(xyz))
            records = np.empty(stop - start, dtype=POINT3D_DTYPE)
            records["point3D_id"] = np.arange(start, stop) + 1
            records["xyz"] = xyz[start:stop]
            records["rgb"] = rgb[start:stop]
            records["error"] = errors[start:stop]
            records["track_length"] = 1
            records["image_id"] = frame[start:stop] + 1
            records["point2D_idx"] = point2D_index[start:stop]
            file.write(records.tobytes())
