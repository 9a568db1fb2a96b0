"""MegaLoc place-recognition descriptors: a covisibility source for frame graphs."""

from vggt_sparse_ns.sparse.megaloc.descriptors import megaloc_descriptors
from vggt_sparse_ns.sparse.megaloc.model import MegaLoc, MegaLocConfig, build_megaloc
from vggt_sparse_ns.sparse.megaloc.weights import DEFAULT_MEGALOC_CHECKPOINT, load_megaloc, megaloc_checkpoint

__all__ = [
    "DEFAULT_MEGALOC_CHECKPOINT",
    "MegaLoc",
    "MegaLocConfig",
    "build_megaloc",
    "load_megaloc",
    "megaloc_checkpoint",
    "megaloc_descriptors",
]
