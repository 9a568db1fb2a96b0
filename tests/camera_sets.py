"""Camera sets with known geometry (for the evaluation and export tests), and a pycolmap writer for them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vggt_sparse_ns.evaluate.cameras import CameraSet


def rotation_about(axis, degrees: float) -> np.ndarray:
    """Rodrigues' rotation by ``degrees`` about ``axis``."""
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def random_rotations(count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3, 3) rotations from random unit quaternions."""
    q = rng.normal(size=(count, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    ).transpose(2, 0, 1)


def camera_set(
    rotations: np.ndarray,
    centres: np.ndarray,
    focal: float = 500.0,
    size: tuple[int, int] = (640, 480),
    names: list[str] | None = None,
) -> CameraSet:
    """Cameras with camera-from-world rotations R and centres c: t = -R c."""
    count = len(rotations)
    translations = -np.einsum("nij,nj->ni", rotations, centres)
    return CameraSet(
        names=tuple(names or [f"images/frame_{i + 1:05d}.png" for i in range(count)]),
        T_camera_world=np.concatenate([rotations, translations[:, :, None]], axis=2),
        focal_lengths=np.full((count, 2), focal),
        sizes=np.tile(size, (count, 1)).astype(np.int64),
        source="synthetic",
    )


def random_cameras(count: int, seed: int = 0) -> CameraSet:
    rng = np.random.default_rng(seed)
    return camera_set(random_rotations(count, rng), rng.normal(size=(count, 3)) * 3)


def in_transformed_world(cameras: CameraSet, scale: float, rotation: np.ndarray, translation) -> CameraSet:
    """The same cameras in the world x' = scale * rotation @ x + translation (poses of the scaled camera frames:
    R' = R rotation^T, t' = scale * t - R' translation)."""
    rotations = cameras.T_camera_world[:, :, :3] @ rotation.T
    translations = scale * cameras.T_camera_world[:, :, 3] - rotations @ np.asarray(translation, dtype=np.float64)
    return CameraSet(
        cameras.names,
        np.concatenate([rotations, translations[:, :, None]], axis=2),
        cameras.focal_lengths,
        cameras.sizes,
        cameras.source,
    )


def write_pycolmap_model(folder: Path, cameras: CameraSet, text: bool = False, camera_model: str = "PINHOLE") -> Path:
    """A COLMAP model of ``cameras`` (one camera per image, five points seen by none) written by pycolmap itself."""
    import pycolmap

    reconstruction = pycolmap.Reconstruction()
    for index, name in enumerate(cameras.names):
        (fx, fy), (width, height) = cameras.focal_lengths[index], cameras.sizes[index]
        params = [fx, fy, width / 2, height / 2] if camera_model == "PINHOLE" else [fx, width / 2, height / 2, 0.01]
        camera = pycolmap.Camera(
            camera_id=index + 1, model=camera_model, width=int(width), height=int(height), params=params
        )
        reconstruction.add_camera_with_trivial_rig(camera)
        pose = cameras.T_camera_world[index]
        cam_from_world = pycolmap.Rigid3d(rotation=pycolmap.Rotation3d(pose[:, :3]), translation=pose[:, 3])
        image = pycolmap.Image(image_id=index + 1, name=Path(name).name, camera_id=index + 1)
        reconstruction.add_image_with_trivial_frame(image, cam_from_world)
    for xyz in np.random.default_rng(0).normal(size=(5, 3)):  # nerfstudio's converter makes a PLY of them
        reconstruction.add_point3D(xyz, pycolmap.Track(), np.array([200, 100, 50], dtype=np.uint8))
    folder.mkdir(parents=True, exist_ok=True)
    if text:
        reconstruction.write_text(folder)
    else:
        reconstruction.write_binary(folder)
    return folder
