"""What a refined reconstruction adds to the exports: its triangulated points in sparse_pc.ply, and in the
COLMAP model its points with their tracks and the camera model the cameras were refined with."""

from __future__ import annotations

from typing import Any

import numpy as np

from vggt_sparse_ns.export.geometry import to_nerfstudio_world
from vggt_sparse_ns.export.points import PointCloud
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction, SparsePoints


def ply_arrays(points: PointCloud, sparse: SparsePoints | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sparse_pc.ply's xyz (nerfstudio's saved world), rgb and confidence: the cloud, then a refinement's
    triangulated points, given the cloud's highest confidence (each is verified in several frames)."""
    if sparse is None or len(sparse) == 0:
        return to_nerfstudio_world(points.xyz), points.rgb, points.confidence
    confidence = np.full(len(sparse), points.confidence.max() if len(points) else 1.0, dtype=np.float32)
    return (
        to_nerfstudio_world(np.concatenate([points.xyz, sparse.xyz.astype(points.xyz.dtype)])),
        np.concatenate([points.rgb, sparse.rgb]),
        np.concatenate([points.confidence, confidence]),
    )


def refined_colmap_points(reconstruction: Reconstruction) -> dict[str, Any] | None:
    """``write_colmap``'s point arguments for a refined reconstruction (tracks, camera model, distortion);
    None when the reconstruction has no triangulated points."""
    sparse = reconstruction.sparse_points
    if sparse is None:
        return None
    return {
        "xyz": sparse.xyz,
        "rgb": sparse.rgb,
        "frame": sparse.frame,
        "pixel": sparse.pixel,
        "point": sparse.point,
        "camera_model": sparse.camera_model,
        "distortion": reconstruction.distortion,
    }


def shares_distortion(distortion: np.ndarray | None) -> bool:
    """Whether every frame has the same distortion (a shared COLMAP camera needs that too)."""
    return distortion is None or bool(np.all(distortion == distortion[0]))
