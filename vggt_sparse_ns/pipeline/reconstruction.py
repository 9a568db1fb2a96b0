"""The hand-off between the model and the exporters: one scene's predictions on the host."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vggt_sparse_ns.images import ImageTransform


@dataclass(frozen=True)
class SparsePoints:
    """World points seen in several frames, as a structure-from-motion model holds them (VGGT's world)."""

    xyz: np.ndarray
    """[N, 3] float64."""
    rgb: np.ndarray
    """[N, 3] uint8."""
    camera_model: str
    """The COLMAP camera model the cameras were refined with: PINHOLE, SIMPLE_RADIAL or OPENCV."""
    point: np.ndarray
    """[M] int64: the point each observation sees (observations sorted by point)."""
    frame: np.ndarray
    """[M] int64: the frame of each observation."""
    pixel: np.ndarray
    """[M, 2] float64: where each observation sees its point, in full-resolution pixels of its image."""

    def __len__(self) -> int:
        return len(self.xyz)


@dataclass
class Reconstruction:
    """Cameras, depth and colours of S frames, in model pixels (H x W), world = frame 0's camera.

    Conventions (docs/conventions.md): ``T_camera_world`` maps world points to OpenCV camera
    coordinates (x right, y down, z forward); ``intrinsics`` are in continuous model pixels;
    ``depth`` is the z coordinate in the camera frame. ``transforms[i]`` maps frame i's model
    pixels to the pixels of ``image_paths[i]`` (full resolution).
    """

    image_paths: list[Path]
    transforms: list[ImageTransform]
    T_camera_world: np.ndarray
    """[S, 3, 4] float32."""
    intrinsics: np.ndarray
    """[S, 3, 3] float32, model pixels."""
    depth: np.ndarray
    """[S, H, W] float32."""
    depth_conf: np.ndarray
    """[S, H, W] float32, >= 1 (higher is more confident)."""
    colors: np.ndarray
    """[S, H, W, 3] uint8: the model's input images."""
    world_points: np.ndarray | None = None
    """[S, H, W, 3] float32 from the point head, when it ran."""
    world_points_conf: np.ndarray | None = None
    attention: dict[str, Any] = field(default_factory=dict)
    """The global-attention strategy's summary (strategy, parameters, graph statistics)."""
    graph_edges: np.ndarray | None = None
    """[E, 2] int64 frame pairs (i < j) that attended to each other; None for dense attention."""
    distortion: np.ndarray | None = None
    """[S, 4] float64 OpenCV distortion (k1, k2, p1, p2) in normalised camera coordinates, set by a refinement
    with a distortion model; None: no distortion."""
    sparse_points: SparsePoints | None = None
    """Points triangulated from feature tracks by a refinement, with their observations."""
    refinement: dict[str, Any] = field(default_factory=dict)
    """The refinement's summary (errors before and after, frames adjusted and kept, counts, seconds per
    stage); empty when the cameras are VGGT's own."""

    @property
    def num_frames(self) -> int:
        return len(self.image_paths)
