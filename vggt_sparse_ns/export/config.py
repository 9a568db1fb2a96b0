"""What the exporters write, as a tyro-friendly configuration, and the error they raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PointSource = Literal["depth", "points"]
DepthFormat = Literal["png", "npy"]


class ExportError(ValueError):
    """The reconstruction or the output folder cannot make a nerfstudio dataset; the message says why."""


@dataclass(frozen=True)
class ExportConfig:
    """Exports of a reconstruction: point cloud, optional depth maps and COLMAP model."""

    point_source: PointSource = "depth"
    """Where the point cloud comes from: 'depth' unprojects the depth maps with the predicted cameras
    (consistent with the poses); 'points' takes the point head's world points."""
    confidence_percentile: float = 50.0
    """Drop the least confident pixels: keep those at or above this percentile of the confidence over
    all frames (0 keeps all). Applies to the point cloud and to depth maps."""
    min_confidence: float = 1.0
    """Also drop pixels whose confidence is below this value (VGGT's confidence starts at 1)."""
    max_points: int = 1_000_000
    """Most points in sparse_pc.ply (and in the COLMAP model); the cloud is voxel-downsampled to fit."""
    depth: bool = False
    """Also write per-frame depth maps for nerfstudio's depth losses (depth/, depths_2/...); the run
    summary names the --depth-unit-scale-factor to pass to the nerfstudio-data dataparser."""
    depth_format: DepthFormat = "png"
    """Depth map files: 'png' (16-bit, compact) or 'npy' (float32, exact, works with the dataparser's
    default depth unit)."""
    colmap: bool = False
    """Also write colmap/sparse/0/{cameras,images,points3D}.bin for COLMAP-format consumers."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence_percentile < 100.0:
            raise ExportError(f"confidence_percentile must be in [0, 100), got {self.confidence_percentile}")
        if self.max_points < 1:
            raise ExportError(f"max_points must be at least 1, got {self.max_points}")
        if self.point_source not in ("depth", "points"):
            raise ExportError(f"point_source must be 'depth' or 'points', got {self.point_source!r}")
        if self.depth_format not in ("png", "npy"):
            raise ExportError(f"depth_format must be 'png' or 'npy', got {self.depth_format!r}")
