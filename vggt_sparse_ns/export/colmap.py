"""A COLMAP sparse model (cameras.bin, images.bin, points3D.bin) in COLMAP's binary format.

Poses are world-to-camera in OpenCV camera axes (COLMAP's convention) in VGGT's world, so COLMAP
consumers, nerfstudio's own COLMAP converter included, apply their usual world change and reach the
same frame as our transforms.json. Cameras are in full-resolution pixels, PINHOLE unless a refinement chose
a distortion model (one shared camera when all frames share intrinsics, else one per frame). Points come
with their tracks: a refined run's triangulated points with every frame that sees them, or depth points with
the one pixel each was lifted from (a track of length 1). A point's error is the mean reprojection error of
its observations. Written in streaming fashion: memory grows with points and observations, never with pairs.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vggt_sparse_ns.camera_models import CAMERA_MODEL_IDS, colmap_params, project
from vggt_sparse_ns.export.atomic import atomic_path

POINTS_CHUNK = 1_000_000
POINT2D_DTYPE = np.dtype([("x", "<f8"), ("y", "<f8"), ("point3D_id", "<i8")])
POINT3D_HEADER_DTYPE = np.dtype(
    [("point3D_id", "<u8"), ("xyz", "<f8", (3,)), ("rgb", "u1", (3,)), ("error", "<f8"), ("track_length", "<u8")]
)
TRACK_ELEMENT_DTYPE = np.dtype([("image_id", "<i4"), ("point2D_idx", "<i4")])


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
    point: np.ndarray | None = None,
    camera_model: str = "PINHOLE",
    distortion: np.ndarray | None = None,
) -> Path:
    """Write the model into ``sparse_dir`` (e.g. colmap/sparse/0).

    T_camera_world [S, 3, 4] and full-resolution intrinsics [S, 3, 3] per frame, image sizes (w, h),
    names relative to the image folder; ``shared_intrinsic`` (3x3) makes one camera for all frames.
    Points [N, 3] in the same world with colours [N, 3] uint8. Observations: frame [M] and pixel [M, 2] in
    full-resolution pixels, of point ``point`` [M] (None: observation i is point i's only one).
    ``camera_model`` PINHOLE, SIMPLE_RADIAL or OPENCV with ``distortion`` [S, 4] (k1, k2, p1, p2; None:
    zeros). Image ids are frame index + 1; point ids are point index + 1.
    """
    frame = np.asarray(frame, dtype=np.int64)
    point = np.arange(len(frame)) if point is None else np.asarray(point, dtype=np.int64)
    distortion = np.zeros((len(image_names), 4)) if distortion is None else np.asarray(distortion, np.float64)
    order = np.argsort(frame, kind="stable")
    bounds = np.searchsorted(frame[order], np.arange(len(image_names) + 1))
    point2D_index = np.empty(len(frame), dtype=np.int64)
    point2D_index[order] = np.arange(len(order)) - bounds[frame[order]]
    projected, _ = project(
        np.asarray(xyz, np.float64)[point],
        np.asarray(T_camera_world, np.float64)[frame],
        np.asarray(intrinsics, np.float64)[frame],
        distortion[frame],
    )
    errors = np.linalg.norm(projected - pixel, axis=1)
    point_errors = np.bincount(point, errors, minlength=len(xyz)) / np.maximum(
        np.bincount(point, minlength=len(xyz)), 1
    )

    cameras = (
        [(1, shared_intrinsic, distortion[0], sizes[0])]
        if shared_intrinsic is not None
        else [
            (index + 1, k, d, size)
            for index, (k, d, size) in enumerate(zip(intrinsics, distortion, sizes, strict=True))
        ]
    )
    _write_cameras(sparse_dir / "cameras.bin", camera_model, cameras)
    _write_images(
        sparse_dir / "images.bin",
        T_camera_world,
        image_names,
        shared_intrinsic is not None,
        order,
        bounds,
        pixel,
        point,
    )
    _write_points(sparse_dir / "points3D.bin", xyz, rgb, point_errors, point, frame, point2D_index)
    return sparse_dir


def _write_cameras(
    path: Path, camera_model: str, cameras: list[tuple[int, np.ndarray, np.ndarray, tuple[int, int]]]
) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(struct.pack("<Q", len(cameras)))
        for camera_id, k, distortion, (width, height) in cameras:
            params = colmap_params(camera_model, k, distortion)
            file.write(struct.pack("<iiQQ", camera_id, CAMERA_MODEL_IDS[camera_model], width, height))
            file.write(struct.pack(f"<{len(params)}d", *params))


def _write_images(
    path: Path,
    T_camera_world: np.ndarray,
    image_names: Sequence[str],
    shared_camera: bool,
    order: np.ndarray,
    bounds: np.ndarray,
    pixel: np.ndarray,
    point: np.ndarray,
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
            observations["point3D_id"] = point[members] + 1
            file.write(struct.pack("<Q", len(members)))
            file.write(observations.tobytes())


def _write_points(
    path: Path,
    xyz: np.ndarray,
    rgb: np.ndarray,
    errors: np.ndarray,
    point: np.ndarray,
    frame: np.ndarray,
    point2D_index: np.ndarray,
) -> None:
    """Each point's header then its track elements, packed chunk by chunk into one byte buffer."""
    by_point = np.argsort(point, kind="stable")
    starts = np.searchsorted(point[by_point], np.arange(len(xyz) + 1))
    header_size, element_size = POINT3D_HEADER_DTYPE.itemsize, TRACK_ELEMENT_DTYPE.itemsize
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(struct.pack("<Q", len(xyz)))
        for first in range(0, len(xyz), POINTS_CHUNK):
            last = min(first + POINTS_CHUNK, len(xyz))
            headers = np.empty(last - first, dtype=POINT3D_HEADER_DTYPE)
            headers["point3D_id"] = np.arange(first, last) + 1
            headers["xyz"], headers["rgb"], headers["error"] = xyz[first:last], rgb[first:last], errors[first:last]
            lengths = np.diff(starts[first : last + 1])
            headers["track_length"] = lengths
            observations = by_point[starts[first] : starts[last]]
            elements = np.empty(len(observations), dtype=TRACK_ELEMENT_DTYPE)
            elements["image_id"] = frame[observations] + 1
            elements["point2D_idx"] = point2D_index[observations]
            # Byte offset of each point's header: the headers and elements of the points before it.
            offsets = np.arange(len(headers)) * header_size + element_size * (starts[first:last] - starts[first])
            buffer = np.empty(len(headers) * header_size + len(elements) * element_size, dtype=np.uint8)
            buffer[offsets[:, None] + np.arange(header_size)] = headers.view(np.uint8).reshape(-1, header_size)
            owner_offsets = np.repeat(offsets + header_size, lengths)
            rank = np.arange(len(elements)) - np.repeat(starts[first:last] - starts[first], lengths)
            element_offsets = owner_offsets + rank * element_size
            buffer[element_offsets[:, None] + np.arange(element_size)] = elements.view(np.uint8).reshape(
                -1, element_size
            )
            file.write(buffer.tobytes())
