"""Writes a synthetic `ns-process-data vggt-sparse` output folder, following its contract exactly.

Cameras sit on a circle around a textured sphere resting on a checkered floor; each camera's image is a
point-splat rendering of the point cloud, so frustum textures show what the camera sees. Written
independently of the viewer's readers (its own PLY writer and pose construction), so tests compare
the viewer against a second implementation of the format.

Run as a script to make a large output for the load-time measurement (see docs/viewer.md):
    python tests/viewer/synthetic_reconstruction.py OUT --cameras 2000 --points 1000000
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DOWNSCALES = (2, 4, 8)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate."""

    cameras: int = 20
    points: int = 5_000
    width: int = 320
    height: int = 240
    downscales: tuple[int, ...] = DOWNSCALES
    with_confidence: bool = True
    with_graph: bool = True
    with_summary: bool = True
    per_frame_intrinsics: bool = False
    render_points: int = 20_000
    """At most this many points are splatted into each image (rendering cost)."""
    seed: int = 0


def sphere_and_floor(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (N, 3) float32, colours (N, 3) uint8 and confidences (N,) float32 of a striped sphere on a floor."""
    on_sphere = count * 2 // 3
    direction = rng.normal(size=(on_sphere, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    sphere = direction + np.array([0.0, 0.0, 1.0])
    longitude = np.arctan2(direction[:, 1], direction[:, 0])
    stripe = (np.floor((longitude + np.pi) / (np.pi / 6)) % 2).astype(bool)
    sphere_colour = np.where(stripe[:, None], [230, 80, 40], [40, 110, 220]) * (0.6 + 0.4 * direction[:, 2:3] ** 2)

    floor = np.concatenate([rng.uniform(-3, 3, size=(count - on_sphere, 2)), np.zeros((count - on_sphere, 1))], axis=1)
    checker = ((np.floor(floor[:, 0] * 2) + np.floor(floor[:, 1] * 2)) % 2).astype(bool)
    floor_colour = np.where(checker[:, None], [235, 235, 225], [70, 140, 80])

    points = np.concatenate([sphere, floor]).astype(np.float32)
    colours = np.concatenate([sphere_colour, floor_colour]).clip(0, 255).astype(np.uint8)
    confidence = (1.0 + 5.0 * np.exp(-np.linalg.norm(points[:, :2], axis=1))).astype(np.float32)
    return points, colours, confidence


def circle_poses(count: int, radius: float = 4.0, height: float = 2.0) -> np.ndarray:
    """Camera-to-world (count, 4, 4), OpenGL axes (x right, y up, looking down -z), all looking at (0, 0, 0.8)."""
    target = np.array([0.0, 0.0, 0.8])
    poses = np.tile(np.eye(4), (count, 1, 1))
    for index in range(count):
        angle = 2 * np.pi * index / count
        centre = np.array([radius * np.cos(angle), radius * np.sin(angle), height + 0.3 * np.sin(3 * angle)])
        backward = (centre - target) / np.linalg.norm(centre - target)
        right = np.cross([0.0, 0.0, 1.0], backward)
        right /= np.linalg.norm(right)
        up = np.cross(backward, right)
        poses[index, :3, :3] = np.stack([right, up, backward], axis=1)
        poses[index, :3, 3] = centre
    return poses


def render(
    points: np.ndarray, colours: np.ndarray, c2w_opengl: np.ndarray, focal: float, size: tuple[int, int]
) -> np.ndarray:
    """A painter's-algorithm point splat (2x2 pixels) of the points seen by an OpenGL-convention camera."""
    width, height = size
    rotation, centre = c2w_opengl[:3, :3], c2w_opengl[:3, 3]
    in_camera = (points - centre) @ rotation
    depth = -in_camera[:, 2]
    u = focal * in_camera[:, 0] / np.maximum(depth, 1e-6) + width / 2
    v = -focal * in_camera[:, 1] / np.maximum(depth, 1e-6) + height / 2
    visible = (depth > 0.1) & (u >= 0) & (u < width - 1) & (v >= 0) & (v < height - 1)
    order = np.argsort(-depth[visible])
    column, row = u[visible][order].astype(int), v[visible][order].astype(int)
    colour = colours[visible][order]
    sky = np.linspace([200, 215, 235], [150, 170, 200], height).astype(np.uint8)
    image = np.broadcast_to(sky[:, None, :], (height, width, 3)).copy()
    for d_row in (0, 1):
        for d_column in (0, 1):
            image[row + d_row, column + d_column] = colour
    return image


def ring_graph(count: int) -> list[list[int]]:
    """Each camera linked to its two neighbours on each side, plus a few chords across the circle."""
    edges = {tuple(sorted((i, (i + step) % count))) for i in range(count) for step in (1, 2) if count > step}
    edges |= {tuple(sorted((i, (i + count // 2) % count))) for i in range(0, count, 5) if count > 3}
    return [list(edge) for edge in sorted(edges) if edge[0] != edge[1]]


def write_ply(path: Path, points: np.ndarray, colours: np.ndarray, confidence: np.ndarray | None) -> None:
    """Binary little-endian PLY: float x, y, z, uchar red, green, blue[, float confidence]."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if confidence is not None:
        fields.append(("confidence", "<f4"))
    vertices = np.empty(len(points), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = colours[:, channel]
    if confidence is not None:
        vertices["confidence"] = confidence
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    header += [f"property {'float' if kind == '<f4' else 'uchar'} {name}" for name, kind in fields]
    header.append("end_header")
    with path.open("wb") as stream:
        stream.write(("\n".join(header) + "\n").encode("ascii"))
        stream.write(vertices.tobytes())


def write_synthetic_output(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Writes the folder at `root` and returns it."""
    rng = np.random.default_rng(spec.seed)
    root.mkdir(parents=True, exist_ok=True)
    points, colours, confidence = sphere_and_floor(spec.points, rng)
    poses = circle_poses(spec.cameras)
    focal = 0.9 * spec.width
    intrinsics = {"fl_x": focal, "fl_y": focal, "cx": spec.width / 2, "cy": spec.height / 2}
    intrinsics |= {"w": spec.width, "h": spec.height}
    splat = rng.choice(len(points), size=min(spec.render_points, len(points)), replace=False)

    for folder in ["images", *(f"images_{factor}" for factor in spec.downscales)]:
        (root / folder).mkdir(exist_ok=True)
    frames = []
    for index, pose in enumerate(poses):
        name = f"frame_{index + 1:05d}.png"
        image = Image.fromarray(render(points[splat], colours[splat], pose, focal, (spec.width, spec.height)))
        image.save(root / "images" / name)
        for factor in spec.downscales:
            size = (max(1, spec.width // factor), max(1, spec.height // factor))
            image.resize(size, Image.Resampling.BILINEAR).save(root / f"images_{factor}" / name)
        frame = {"file_path": f"images/{name}", "transform_matrix": pose.tolist()}
        if spec.per_frame_intrinsics:
            frame |= intrinsics | {"camera_model": "PINHOLE"}
        frames.append(frame)

    transforms = {"frames": frames, "ply_file_path": "sparse_pc.ply"}
    transforms["applied_transform"] = np.eye(4)[:3].tolist()
    if not spec.per_frame_intrinsics:
        transforms |= intrinsics | {"camera_model": "OPENCV", "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    (root / "transforms.json").write_text(json.dumps(transforms, indent=2))
    write_ply(root / "sparse_pc.ply", points, colours, confidence if spec.with_confidence else None)

    (root / "vggt").mkdir(exist_ok=True)
    edges = ring_graph(spec.cameras)
    if spec.with_graph:
        (root / "vggt" / "graph.json").write_text(json.dumps({"edges": edges}))
    if spec.with_summary:
        summary = {
            "frames": spec.cameras,
            "strategy": "synthetic-ring",
            "graph": {"edges": len(edges), "mean_degree": 2 * len(edges) / spec.cameras},
            "seconds": {"load images": 0.5, "inference": 2.25},
            "peak_gib": 1.5,
            "points": spec.points,
        }
        (root / "vggt" / "summary.json").write_text(json.dumps(summary, indent=2))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--cameras", type=int, default=SyntheticSpec.cameras)
    parser.add_argument("--points", type=int, default=SyntheticSpec.points)
    parser.add_argument("--width", type=int, default=SyntheticSpec.width)
    parser.add_argument("--height", type=int, default=SyntheticSpec.height)
    args = parser.parse_args()
    spec = SyntheticSpec(cameras=args.cameras, points=args.points, width=args.width, height=args.height)
    print(write_synthetic_output(args.output, spec))


if __name__ == "__main__":
    main()
