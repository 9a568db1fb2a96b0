"""vggt-sparse-ns: VGGT with sparse global attention as a nerfstudio data-processing step.

The front door: the names below are imported on first use (PEP 562), so ``import vggt_sparse_ns`` stays
light (nerfstudio loads plugin entry points at start-up) and the first use of a name loads what it needs.

Example:
    >>> from vggt_sparse_ns import CovisibilityAttention, ReconstructionConfig, reconstruct
    >>> result = reconstruct(["a.jpg", "b.jpg", "c.jpg"], ReconstructionConfig(device="cuda"))
    >>> result.T_camera_world.shape  # [S, 3, 4] camera-from-world, OpenCV axes; frame 0 is the world frame
    (3, 3, 4)
"""

from vggt_sparse_ns.lazy import lazy_attributes

__version__ = "0.1.0"

_EXPORTS = {
    # Image files -> a Reconstruction (cameras, depth, colours on the host).
    "reconstruct": "vggt_sparse_ns.pipeline.run",
    "ReconstructionConfig": "vggt_sparse_ns.pipeline.config",
    "Reconstruction": "vggt_sparse_ns.pipeline.reconstruction",
    # The model and its input.
    "VGGT": "vggt_sparse_ns.model.vggt",
    "VGGTConfig": "vggt_sparse_ns.model.config",
    "build_model": "vggt_sparse_ns.model.vggt",
    "load_pretrained": "vggt_sparse_ns.model.weights",
    "load_images": "vggt_sparse_ns.images",
    # Global-attention strategies.
    "DenseAttention": "vggt_sparse_ns.sparse.dense",
    "CovisibilityAttention": "vggt_sparse_ns.sparse.covisibility",
    "BlockSparseAttention": "vggt_sparse_ns.sparse.block_sparse",
    "LayerSelection": "vggt_sparse_ns.sparse.layer_selection",
    "SparseAttentionConfig": "vggt_sparse_ns.sparse.config",
    # A Reconstruction -> dataset files.
    "ExportConfig": "vggt_sparse_ns.export.config",
    "export_dataset": "vggt_sparse_ns.export.dataset",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
