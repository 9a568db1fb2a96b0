"""A synthetic scene with exact ground truth, and its translation into VGGT's output format.

The scene: a square of ground (z = 0, world z up, 12 units wide) and a box standing on it, both with a smooth
procedural texture, and sky beyond. Cameras look at the box from around it. Images are ray-cast at
full resolution (pixel centres at +0.5) and written to disk; the model-resolution predictions are
ray-cast again with the model-pixel camera that ``load_images``' transforms imply, and expressed as
VGGT expresses them: world = camera 0 (OpenCV axes), scaled by an arbitrary factor.
At the end: small inputs shared by other tests (a random rotation, a tiny exportable dataset).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vggt_sparse_ns.images import ImageTransform, PreprocessMode, load_images
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

BOX_MIN = np.array([-0.6, -0.4, 0.0])
BOX_MAX = np.array([0.6, 0.4, 0.9])
GROUND_HALF_WIDTH = 6.0
SCENE_SIZE = 2 * GROUND_HALF_WIDTH
SKY_RGB = (190, 215, 250)
VGGT_SCALE = 0.37
"""VGGT's world is camera 0's frame times an arbitrary scale: this one."""
PADDING_DEPTH, PADDING_CONFIDENCE = 7.7, 50.0
"""Padding gets a wrong depth with a high confidence: only the padding mask may remove it."""
SKY_DEPTH, SKY_CONFIDENCE = 123.0, 1.0
"""Sky gets a wrong depth with the lowest confidence: the confidence filter removes it."""


@dataclass(frozen=True)
class Camera:
    """A ground-truth camera: OpenCV world-to-camera and intrinsics in full-resolution pixels."""

    size: tuple[int, int]
    intrinsic: np.ndarray
    T_camera_world: np.ndarray


@dataclass(frozen=True)
class Scene:
    cameras: list[Camera]
    names: list[str]
    """Image paths relative to the dataset folder."""
    reconstruction: Reconstruction


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera (x right, y down, z forward) for a camera at ``eye`` looking at ``target``."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return np.concatenate([rotation, -rotation @ eye[:, None]], axis=1)


def ray_cast(intrinsic: np.ndarray, T_camera_world: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, ...]:
    """z-depth [N] (inf for sky), world points [N, 3] and surface id [N] (-1 sky, 0 ground, 1..6 box
    faces) seen through continuous pixel coordinates [N, 2]."""
    rotation, translation = T_camera_world[:, :3], T_camera_world[:, 3]
    rays_camera = np.linalg.solve(intrinsic, np.c_[pixels, np.ones(len(pixels))].T).T
    rays_camera /= rays_camera[:, 2:]
    directions = rays_camera @ rotation  # world directions whose camera z component is 1
    origin = -rotation.T @ translation
    with np.errstate(divide="ignore", invalid="ignore"):
        ground = np.where(directions[:, 2] < 0, -origin[2] / directions[:, 2], np.inf)
    on_ground = np.abs(origin[:2] + directions[:, :2] * np.where(np.isinf(ground), 0.0, ground)[:, None])
    ground = np.where((on_ground <= GROUND_HALF_WIDTH).all(axis=1), ground, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        slab_low = (BOX_MIN - origin) / directions
        slab_high = (BOX_MAX - origin) / directions
    entry = np.minimum(slab_low, slab_high)
    near, far = entry.max(axis=1), np.maximum(slab_low, slab_high).min(axis=1)
    box = np.where((near <= far) & (near > 0), near, np.inf)
    depth = np.minimum(ground, box)
    axis = entry.argmax(axis=1)
    box_face = 1 + 2 * axis + (directions[np.arange(len(axis)), axis] > 0)
    face = np.where(np.isinf(depth), -1, np.where(box < ground, box_face, 0))
    points = origin + directions * np.where(np.isinf(depth), 0.0, depth)[:, None]
    return depth, points, face


def texture(points: np.ndarray) -> np.ndarray:
    """Smooth procedural colours [N, 3] uint8 of world points."""
    x, y, z = points.T
    rgb = np.stack(
        [
            128 + 90 * np.sin(2.1 * x + 0.7 * z),
            128 + 90 * np.sin(1.7 * y - 1.3 * z + 1.0),
            128 + 90 * np.cos(1.3 * x + 2.3 * y + 0.4 * z),
        ],
        axis=1,
    )
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def distance_to_surfaces(points: np.ndarray) -> np.ndarray:
    """Distance [N] from world points to the union of the ground plane and the box surface (points
    beyond the ground square are measured to its plane: the test's points never lie there)."""
    centre, half = (BOX_MIN + BOX_MAX) / 2, (BOX_MAX - BOX_MIN) / 2
    offset = np.abs(points - centre) - half
    outside = np.linalg.norm(np.maximum(offset, 0.0), axis=1)
    inside = np.minimum(offset.max(axis=1), 0.0)
    return np.minimum(np.abs(points[:, 2]), np.abs(outside + inside))


def pixel_grid(width: int, height: int, step: int = 1) -> np.ndarray:
    """Continuous coordinates [N, 2] of pixel centres, row by row."""
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    return np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1).astype(np.float64)


def render(camera: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution image [h, w, 3] uint8, z-depth [h, w] (inf for sky) and surface ids [h, w]."""
    width, height = camera.size
    depth, points, face = ray_cast(camera.intrinsic, camera.T_camera_world, pixel_grid(width, height))
    colours = np.where(face[:, None] >= 0, texture(points), np.array(SKY_RGB, dtype=np.uint8))
    return colours.reshape(height, width, 3), depth.reshape(height, width), face.reshape(height, width)


def make_cameras(sizes: list[tuple[int, int]], shared_intrinsics: bool = False) -> list[Camera]:
    """Cameras around the box, some looking low enough to see sky. Intrinsics differ per frame (focal
    length from the image size, principal point off centre) unless ``shared_intrinsics``."""
    cameras = []
    for index, (width, height) in enumerate(sizes):
        angle = -1.1 + 2.2 * index / max(len(sizes) - 1, 1)
        eye = np.array([3.0 * np.sin(angle), -3.0 * np.cos(angle), 1.2 + 0.25 * (index % 3)])
        target = np.array([0.1 * np.cos(3 * index), 0.05 * index, 0.45 + 0.2 * (index % 2)])
        focal = 0.95 * max(width, height)
        shift = 0 if shared_intrinsics else index
        intrinsic = np.array(
            [[focal * 1.01, 0.0, width / 2 + 3.5 * (shift - 1)], [0.0, focal, height / 2 - 2.25 * shift], [0, 0, 1]]
        )
        cameras.append(Camera((width, height), intrinsic, look_at(eye, target)))
    return cameras


def model_intrinsic(camera: Camera, transform: ImageTransform) -> np.ndarray:
    """The camera in model pixels: x_model = x_original * scale + (pad - crop), from the transform's fields."""
    scale_x = transform.resized_size[0] / transform.original_size[0]
    scale_y = transform.resized_size[1] / transform.original_size[1]
    to_model = np.array(
        [
            [scale_x, 0.0, transform.pad[0] - transform.crop[0]],
            [0.0, scale_y, transform.pad[1] - transform.crop[1]],
            [0.0, 0.0, 1.0],
        ]
    )
    return to_model @ camera.intrinsic


def relative_pose(camera: Camera, reference: Camera, scale: float) -> np.ndarray:
    """World-to-camera in VGGT's world (reference camera frame times ``scale``)."""
    rotation = camera.T_camera_world[:, :3] @ reference.T_camera_world[:, :3].T
    translation = scale * (camera.T_camera_world[:, 3] - rotation @ reference.T_camera_world[:, 3])
    return np.concatenate([rotation, translation[:, None]], axis=1)


def to_vggt_world(points: np.ndarray, reference: Camera, scale: float) -> np.ndarray:
    return scale * (points @ reference.T_camera_world[:, :3].T + reference.T_camera_world[:, 3])


def make_scene(
    folder: Path, sizes: list[tuple[int, int]], mode: PreprocessMode, shared_intrinsics: bool = False, seed: int = 0
) -> Scene:
    """Write the images into folder/images and build the Reconstruction VGGT would ideally predict."""
    cameras = make_cameras(sizes, shared_intrinsics)
    names = [f"images/frame_{index + 1:05d}.png" for index in range(len(cameras))]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for camera, name in zip(cameras, names, strict=True):
        Image.fromarray(render(camera)[0]).save(folder / name, compress_level=1)
    batch = load_images([folder / name for name in names], mode=mode)
    frames, _, height, width = batch.tensor.shape
    rng = np.random.default_rng(seed)
    depth = np.empty((frames, height, width), np.float32)
    confidence = np.empty((frames, height, width), np.float32)
    world_points = np.empty((frames, height, width, 3), np.float32)
    intrinsics = np.empty((frames, 3, 3), np.float32)
    poses = np.empty((frames, 3, 4), np.float32)
    for index, (camera, transform) in enumerate(zip(cameras, batch.transforms, strict=True)):
        intrinsics[index] = model_intrinsic(camera, transform)
        poses[index] = relative_pose(camera, cameras[0], VGGT_SCALE)
        z, points, face = ray_cast(
            intrinsics[index].astype(np.float64), camera.T_camera_world, pixel_grid(width, height)
        )
        surface = (face >= 0).reshape(height, width)
        x0, y0, x1, y1 = transform.valid_box
        padding = np.ones((height, width), bool)
        padding[y0:y1, x0:x1] = False
        depth[index] = np.where(surface, VGGT_SCALE * z.reshape(height, width), SKY_DEPTH)
        confidence[index] = np.where(surface, rng.uniform(2.0, 10.0, (height, width)), SKY_CONFIDENCE)
        world_points[index] = to_vggt_world(points, cameras[0], VGGT_SCALE).reshape(height, width, 3)
        world_points[index][~surface] = SKY_DEPTH
        depth[index][padding] = PADDING_DEPTH
        confidence[index][padding] = PADDING_CONFIDENCE
        world_points[index][padding] = PADDING_DEPTH
    colors = batch.pixels
    reconstruction = Reconstruction(
        image_paths=batch.paths,
        transforms=batch.transforms,
        T_camera_world=poses,
        intrinsics=intrinsics,
        depth=depth,
        depth_conf=confidence,
        colors=colors,
        world_points=world_points,
        world_points_conf=confidence.copy(),
    )
    return Scene(cameras, names, reconstruction)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A random 3x3 rotation (determinant +1), from the QR decomposition of a Gaussian matrix."""
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return rotation * np.sign(np.linalg.det(rotation))


TINY_TRANSFORM = ImageTransform((84, 56), (42, 28), (0, 0), (0, 0), (42, 28))
"""84x56 images seen by the model at 42x28 pixels, no crop, no padding."""


def tiny_dataset(folder: Path, frames: int) -> tuple[Reconstruction, list[str]]:
    """Plain images in folder/images and a Reconstruction of them: cameras looking down +z from one unit
    apart along world x (camera i's centre at x = i), a wall 2 units in front, confidences rising from 1
    to 5 over the frames' pixels, a chain covisibility graph. Returns it with the image names."""
    names = [f"images/frame_{index + 1:05d}.png" for index in range(frames)]
    (folder / "images").mkdir(parents=True)
    for index, name in enumerate(names):
        Image.new("RGB", TINY_TRANSFORM.original_size, (60 * index % 256, 100, 200)).save(folder / name)
    width, height = TINY_TRANSFORM.model_size
    T_camera_world = np.tile(np.eye(3, 4, dtype=np.float32), (frames, 1, 1))
    T_camera_world[:, 0, 3] = -np.arange(frames)
    reconstruction = Reconstruction(
        image_paths=[Path(name) for name in names],
        transforms=[TINY_TRANSFORM] * frames,
        T_camera_world=T_camera_world,
        intrinsics=np.tile(np.array([[40.0, 0, 21], [0, 40, 14], [0, 0, 1]], np.float32), (frames, 1, 1)),
        depth=np.full((frames, height, width), 2.0, np.float32),
        depth_conf=np.linspace(1.0, 5.0, frames * height * width, dtype=np.float32).reshape(frames, height, width),
        colors=np.full((frames, height, width, 3), 128, np.uint8),
        attention={"strategy": "covisibility"},
        graph_edges=np.array([[index, index + 1] for index in range(frames - 1)]),
    )
    return reconstruction, names
