"""Our implementation of the VGGT architecture, loading the official checkpoints."""

from vggt_sparse_ns.hub import CheckpointMismatchError
from vggt_sparse_ns.model.cameras import pose_encoding_to_cameras
from vggt_sparse_ns.model.config import VGGTConfig
from vggt_sparse_ns.model.vggt import VGGT, build_model
from vggt_sparse_ns.model.weights import load_pretrained, vggt_checkpoint

__all__ = [
    "VGGT",
    "CheckpointMismatchError",
    "VGGTConfig",
    "build_model",
    "load_pretrained",
    "pose_encoding_to_cameras",
    "vggt_checkpoint",
]
