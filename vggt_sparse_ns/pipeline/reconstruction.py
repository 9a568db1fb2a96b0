"""The hand-off between the model and the exporters: one scene's predictions on the host."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vggt_sparse_ns.images import ImageTransform


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

    @property
    def num_frames(self) -> int:
        return len(self.image_paths)
