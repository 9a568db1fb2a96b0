"""A scene with exact ground truth and enough texture for SIFT: a room corner whose walls and floor carry
photographs (scikit-image's sample photographs, shipped inside the package), ray-cast from known cameras.

World = camera 0's frame (OpenCV axes), as VGGT's; model pixels = image pixels (an identity transform), so
the prediction is the ground truth itself, perturbed by ``perturb``. One frame may look at a blank wall.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as photographs

from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

SCENE_SIZE = 4.0
"""Width of the room, the unit of the position perturbation."""


@dataclass(frozen=True)
class Plane:
    origin: np.ndarray
    u_axis: np.ndarray
    v_axis: np.ndarray
    extent: tuple[float, float]
    texture: np.ndarray
    """[h, w, 3] uint8, stretched over the extent."""


def _planes() -> list[Plane]:
    x, y, z = np.eye(3)
    return [
        Plane(np.array([-2.0, -1.5, 5.0]), x, y, (4.0, 3.0), photographs.astronaut()),  # back wall
        Plane(np.array([-2.0, 1.5, 1.0]), x, z, (4.0, 4.0), photographs.coffee()),  # floor (y down)
        Plane(np.array([-2.0, -1.5, 1.0]), z, y, (4.0, 3.0), photographs.chelsea()),  # left wall
        Plane(np.array([2.0, -1.5, 5.0]), -z, y, (4.0, 3.0), photographs.rocket()),  # right wall
    ]


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera [3, 4] for a camera at ``eye`` looking at ``target`` (world y is down)."""
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    return np.concatenate([rotation, -rotation @ eye[:, None]], axis=1)


def render(planes: list[Plane], intrinsic: np.ndarray, T_camera_world: np.ndarray, size: tuple[int, int]):
    """Colours [h, w, 3] uint8 and z-depth [h, w] seen through the pixel centres (bilinear texture lookup)."""
    width, height = size
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays_camera = np.stack([cols, rows, np.ones_like(cols)], -1) @ np.linalg.inv(intrinsic).T
    rotation, translation = T_camera_world[:, :3], T_camera_world[:, 3]
    centre = -rotation.T @ translation
    rays = rays_camera @ rotation  # world directions (R^T d)
    best = np.full((height, width), np.inf)
    colours = np.zeros((height, width, 3))
    for plane in planes:
        normal = np.cross(plane.u_axis, plane.v_axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((plane.origin - centre) @ normal) / (rays @ normal)
        hit = centre + t[..., None] * rays
        u = (hit - plane.origin) @ plane.u_axis / plane.extent[0]
        v = (hit - plane.origin) @ plane.v_axis / plane.extent[1]
        visible = (t > 0) & (t < best) & (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
        best[visible] = t[visible]
        colours[visible] = _bilinear(plane.texture, u[visible], v[visible])
    depth = best * rays_camera[..., 2]
    return np.clip(colours, 0, 255).astype(np.uint8), np.where(np.isfinite(depth), depth, 0.0)


def _bilinear(texture: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    height, width = texture.shape[:2]
    x = np.clip(u * width - 0.5, 0, width - 1.001)
    y = np.clip(v * height - 0.5, 0, height - 1.001)
    x0, y0 = x.astype(int), y.astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = texture.astype(np.float64)
    top = t[y0, x0] * (1 - fx) + t[y0, x0 + 1] * fx
    bottom = t[y0 + 1, x0] * (1 - fx) + t[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


@dataclass(frozen=True)
class TexturedScene:
    truth: Reconstruction
    blank_frame: int | None


def make_scene(
    folder: Path,
    *,
    frames: int = 8,
    size: tuple[int, int] = (320, 240),
    focal: float = 260.0,
    blank_frame: int | None = None,
    seed: int = 0,
) -> TexturedScene:
    """Render ``frames`` views of the room corner into ``folder`` (PNG) from cameras on an arc; world = camera
    0's frame. ``blank_frame`` shows a uniform grey image instead (no texture: nothing to match)."""
    rng = np.random.default_rng(seed)
    poses = []
    for index in range(frames):
        angle = np.deg2rad(-25 + 50 * index / max(frames - 1, 1))
        eye = np.array([2.2 * np.sin(angle), -0.3 + 0.2 * rng.standard_normal(), 5.0 - 4.4 * np.cos(angle)])
        target = np.array([0.3 * rng.standard_normal(), 0.3, 4.5])
        poses.append(look_at(eye, target))
    return render_scene(folder, _planes(), poses, size=size, focal=focal, blank_frame=blank_frame)


BOX_RING_SIZE = 9.0
"""Diameter of the box ring's camera circle, the unit of its position perturbation."""


def make_box_ring_scene(folder: Path, *, frames: int = 8, focal: float = 300.0) -> TexturedScene:
    """An open box (four photographed sides) on a grass floor, seen by ``frames`` cameras on a circle around it,
    looking at its centre: neighbouring views share one face, so nearly every track has two views."""
    x, y, z = np.eye(3)
    sides = [photographs.astronaut(), photographs.coffee(), photographs.chelsea(), photographs.rocket()]
    planes = [
        Plane(np.array([-1.0, -1.0, -1.0]), x, y, (2.0, 2.0), sides[0]),
        Plane(np.array([1.0, -1.0, 1.0]), -x, y, (2.0, 2.0), sides[1]),
        Plane(np.array([-1.0, -1.0, 1.0]), -z, y, (2.0, 2.0), sides[2]),
        Plane(np.array([1.0, -1.0, -1.0]), z, y, (2.0, 2.0), sides[3]),
        Plane(np.array([-5.0, 1.0, -5.0]), x, z, (10.0, 10.0), np.repeat(photographs.grass()[..., None], 3, 2)),
    ]
    radius = BOX_RING_SIZE / 2
    poses = [
        look_at(np.array([radius * np.sin(a), -1.5, -radius * np.cos(a)]), np.zeros(3))
        for a in 2 * np.pi * np.arange(frames) / frames
    ]
    return render_scene(folder, planes, poses, size=(320, 240), focal=focal)


def _wall_photographs() -> list[np.ndarray]:
    """Six RGB sample photographs for papering a scene's planes."""
    gray = np.repeat(photographs.camera()[..., None], 3, 2)
    return [
        photographs.astronaut(),
        photographs.coffee(),
        photographs.chelsea(),
        photographs.rocket(),
        gray,
        photographs.immunohistochemistry(),
    ]


CORRIDOR_SIZE = 2.0
"""Width of the corridor, the unit of its position perturbation."""


def make_corridor_scene(folder: Path, *, frames: int = 10, focal: float = 240.0) -> TexturedScene:
    """A camera walking down a 2 x 2 corridor papered with photographs, looking ahead: small baselines along the
    optical axis, as in a video."""
    x, y, z = np.eye(3)
    textures = _wall_photographs()
    planes = []
    for section in range(4):
        start = 3.0 * section
        planes += [
            Plane(np.array([-1.0, -1.0, start]), z, y, (3.0, 2.0), textures[section % 6]),  # left wall
            Plane(np.array([1.0, -1.0, start + 3]), -z, y, (3.0, 2.0), textures[(section + 3) % 6]),  # right wall
            Plane(np.array([-1.0, 1.0, start]), x, z, (2.0, 3.0), textures[(section + 1) % 6]),  # floor
        ]
    planes.append(Plane(np.array([-1.0, -1.0, 12.0]), x, y, (2.0, 2.0), textures[4]))  # the far end
    poses = [
        look_at(np.array([0.05 * np.sin(i), -0.1, 0.3 * i]), np.array([0.1 * np.cos(i), 0.0, 0.3 * i + 5]))
        for i in range(frames)
    ]
    return render_scene(folder, planes, poses, size=(320, 240), focal=focal)


OUTWARD_RING_SIZE = 8.0
"""Width of the outward ring's room, the unit of its position perturbation."""


def make_outward_ring_scene(
    folder: Path, *, frames: int = 16, radius: float = 0.5, focal: float = 260.0
) -> TexturedScene:
    """A camera near the centre of an 8 x 8 room papered with photographs, turning outward on a circle of ``radius``
    (a panning capture: rotation-dominant, each view sharing about two thirds of its neighbour's and a third of the
    next one's)."""
    x, y, z = np.eye(3)
    textures = _wall_photographs()
    half = OUTWARD_RING_SIZE / 2
    planes = [
        Plane(np.array([-half, -1.5, half]), x, y, (OUTWARD_RING_SIZE, 3.0), textures[0]),
        Plane(np.array([half, -1.5, half]), -z, y, (OUTWARD_RING_SIZE, 3.0), textures[1]),
        Plane(np.array([half, -1.5, -half]), -x, y, (OUTWARD_RING_SIZE, 3.0), textures[2]),
        Plane(np.array([-half, -1.5, -half]), z, y, (OUTWARD_RING_SIZE, 3.0), textures[3]),
        Plane(np.array([-half, 1.5, -half]), x, z, (OUTWARD_RING_SIZE, OUTWARD_RING_SIZE), textures[5]),  # floor
    ]
    directions = [np.array([np.sin(a), 0.0, np.cos(a)]) for a in 2 * np.pi * np.arange(frames) / frames]
    poses = [look_at(radius * d, radius * d + d + np.array([0.0, 0.2, 0.0])) for d in directions]
    return render_scene(folder, planes, poses, size=(320, 240), focal=focal)


TABLE_ORBIT_SIZE = 8.0
"""Diameter of the table orbit's lower camera circle, the unit of its position perturbation."""


def make_table_orbit_scene(
    folder: Path, *, per_ring: int = 10, size: tuple[int, int] = (240, 320), focal: float = 280.0
) -> TexturedScene:
    """Three boxes on a grass table top, their faces papered with the six photographs (each photograph on two or
    three faces of different boxes), circled by ``per_ring`` views low and ``per_ring`` views higher up, all looking
    at the table's centre: views from opposite sides see one photograph on different boxes (repeated structure)."""
    x, y, z = np.eye(3)
    textures = _wall_photographs()
    planes = []
    for box, (centre_x, centre_z, side) in enumerate([(-0.8, 0.0, 1.0), (0.7, 0.5, 0.8), (0.2, -0.9, 0.7)]):
        low, high = centre_x - side / 2, centre_x + side / 2
        near, far = centre_z - side / 2, centre_z + side / 2
        top = 1.0 - side
        planes += [
            Plane(np.array([low, top, near]), x, y, (side, side), textures[box]),
            Plane(np.array([high, top, far]), -x, y, (side, side), textures[(box + 1) % 6]),
            Plane(np.array([low, top, far]), -z, y, (side, side), textures[(box + 2) % 6]),
            Plane(np.array([high, top, near]), z, y, (side, side), textures[(box + 3) % 6]),
            Plane(np.array([low, top, near]), x, z, (side, side), textures[(box + 4) % 6]),  # the lid
        ]
    grass = np.repeat(photographs.grass()[..., None], 3, 2)
    planes.append(Plane(np.array([-4.0, 1.0, -4.0]), x, z, (8.0, 8.0), grass))
    poses = []
    for ring, (radius, height) in enumerate([(TABLE_ORBIT_SIZE / 2, -0.5), (3.5, -2.5)]):
        for angle in 2 * np.pi * (np.arange(per_ring) + 0.5 * ring) / per_ring:
            eye = np.array([radius * np.sin(angle), height, -radius * np.cos(angle)])
            poses.append(look_at(eye, np.array([0.0, 0.5, 0.0])))
    return render_scene(folder, planes, poses, size=size, focal=focal)


AERIAL_SIZE = 6.0
"""Flying height of the aerial grid, the unit of its position perturbation."""


def make_aerial_scene(
    folder: Path, *, rows: int = 3, columns: int = 4, focal: float = 250.0, blank_frame: int | None = None
) -> TexturedScene:
    """A drone's grid over flat ground papered with photographs: every camera at the same height looking straight
    down (3 degrees off), neighbours overlapping by about two thirds. One plane seen face-on: its images do not
    determine the focal length (focal length and distance trade). ``blank_frame`` shows a uniform grey image (water)."""
    x, _, z = np.eye(3)
    textures = _wall_photographs()
    ground = [
        Plane(np.array([-6.0 + 4.0 * i, 0.0, -6.0 + 4.0 * j]), x, z, (4.0, 4.0), textures[(3 * i + j) % 6])
        for i in range(3)
        for j in range(3)
    ]
    eyes = [
        np.array([1.6 * (column - (columns - 1) / 2), -AERIAL_SIZE, 1.6 * (row - (rows - 1) / 2)])
        for row in range(rows)
        for column in range(columns)
    ]
    poses = [look_at(eye, eye + np.array([0.05, AERIAL_SIZE, 0.3])) for eye in eyes]
    return render_scene(folder, ground, poses, size=(320, 240), focal=focal, blank_frame=blank_frame)


def render_scene(
    folder: Path,
    planes: list[Plane],
    poses: list[np.ndarray],
    *,
    size: tuple[int, int],
    focal: float,
    blank_frame: int | None = None,
) -> TexturedScene:
    """Render ``planes`` from each world-to-camera pose into ``folder`` (PNG): the truth, with world = camera 0's
    frame."""
    frames = len(poses)
    intrinsic = np.array([[focal, 0.0, size[0] / 2], [0.0, focal, size[1] / 2], [0.0, 0.0, 1.0]])
    world_from_camera0 = np.vstack([np.linalg.inv(np.vstack([poses[0], [0, 0, 0, 1]]))])
    folder.mkdir(parents=True, exist_ok=True)
    images, depths, T_camera_world, paths = [], [], [], []
    for index, pose in enumerate(poses):
        colours, depth = render(planes, intrinsic, pose, size)
        if index == blank_frame:
            colours = np.full_like(colours, 128)
        path = folder / f"frame_{index:05d}.png"
        Image.fromarray(colours).save(path)
        images.append(colours)
        depths.append(depth)
        T_camera_world.append((np.vstack([pose, [0, 0, 0, 1]]) @ world_from_camera0)[:3])
        paths.append(path)
    identity = ImageTransform(size, size, (0, 0), (0, 0), size)
    truth = Reconstruction(
        image_paths=paths,
        transforms=[identity] * frames,
        T_camera_world=np.stack(T_camera_world).astype(np.float32),
        intrinsics=np.repeat(intrinsic[None], frames, 0).astype(np.float32),
        depth=np.stack(depths).astype(np.float32),
        depth_conf=np.ones((frames, size[1], size[0]), np.float32),
        colors=np.stack(images),
    )
    return TexturedScene(truth, blank_frame)


def random_rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def perturb(
    truth: Reconstruction,
    seed: int = 1,
    scene_size: float = SCENE_SIZE,
    rotation_degrees: tuple[float, float] = (1.0, 3.0),
) -> Reconstruction:
    """The prediction: frame 0 exact (it is the world), every other frame rotated by 1-3 degrees (or
    ``rotation_degrees``), moved by 3-5 % of ``scene_size`` and given a focal length off by up to 5 %."""
    rng = np.random.default_rng(seed)
    T_camera_world = truth.T_camera_world.astype(np.float64).copy()
    intrinsics = truth.intrinsics.astype(np.float64).copy()
    for index in range(1, truth.num_frames):
        rotation, translation = T_camera_world[index, :, :3], T_camera_world[index, :, 3]
        centre = -rotation.T @ translation
        direction = rng.standard_normal(3)
        centre = centre + direction / np.linalg.norm(direction) * rng.uniform(0.03, 0.05) * scene_size
        rotation = random_rotation(rng, rng.uniform(*rotation_degrees)) @ rotation
        T_camera_world[index] = np.concatenate([rotation, (-rotation @ centre)[:, None]], axis=1)
        intrinsics[index, :2, :2] *= 1 + rng.choice([-1, 1]) * rng.uniform(0.02, 0.05)
    return Reconstruction(
        **{
            **truth.__dict__,
            "T_camera_world": T_camera_world.astype(np.float32),
            "intrinsics": intrinsics.astype(np.float32),
        }
    )


def rotation_errors_deg(T_a: np.ndarray, T_b: np.ndarray) -> np.ndarray:
    relative = np.einsum("sij,skj->sik", T_a[:, :, :3].astype(np.float64), T_b[:, :, :3].astype(np.float64))
    cosine = np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)
    return np.rad2deg(np.arccos(cosine))


def centre_errors(T_a: np.ndarray, T_b: np.ndarray) -> np.ndarray:
    def centres(T: np.ndarray) -> np.ndarray:
        T = T.astype(np.float64)
        return -np.einsum("sji,sj->si", T[:, :, :3], T[:, :, 3])

    return np.linalg.norm(centres(T_a) - centres(T_b), axis=1)


def at_model_resolution(reconstruction: Reconstruction, transform: ImageTransform) -> Reconstruction:
    """The same cameras as seen by a model whose input is ``transform`` of each image (intrinsics in model
    pixels), with no depth (zeros: refinement must not need it) and grey colours."""
    scale, offset = transform.scale, transform.offset
    to_model = np.array([[scale[0], 0.0, offset[0]], [0.0, scale[1], offset[1]], [0.0, 0.0, 1.0]])
    width, height = transform.model_size
    frames = reconstruction.num_frames
    return Reconstruction(
        **{
            **reconstruction.__dict__,
            "transforms": [transform] * frames,
            "intrinsics": (to_model @ reconstruction.intrinsics.astype(np.float64)).astype(np.float32),
            "depth": np.zeros((frames, height, width), np.float32),
            "depth_conf": np.ones((frames, height, width), np.float32),
            "colors": np.full((frames, height, width, 3), 128, np.uint8),
        }
    )


def perturb_depth(reconstruction: Reconstruction, seed: int = 1) -> Reconstruction:
    """Depth maps each off in their own way, as a depth network's can be: every frame's depth scaled by 0.7-1.4 and
    shifted by up to 30 % of its median (kept positive where it was)."""
    rng = np.random.default_rng(seed)
    depth = reconstruction.depth.astype(np.float64)
    perturbed = np.zeros_like(depth)
    for frame, frame_depth in enumerate(depth):
        valid = frame_depth > 0
        if not np.any(valid):
            continue
        shifted = rng.uniform(0.7, 1.4) * frame_depth + rng.uniform(-0.3, 0.3) * np.median(frame_depth[valid])
        perturbed[frame] = np.where(valid, np.maximum(shifted, 0.01 * frame_depth), 0.0)
    return Reconstruction(**{**reconstruction.__dict__, "depth": perturbed.astype(np.float32)})
