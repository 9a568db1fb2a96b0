"""Browser viewer for `ns-process-data vggt-sparse` outputs: points, textured camera frustums, covisibility graph.

Names are imported on first use so that `vggt-sparse-ns --help` and the nerfstudio plugins do not load
viser, PIL and torch.
"""

from __future__ import annotations

from vggt_sparse_ns.lazy import lazy_attributes

_EXPORTS = {
    "PortInUseError": "vggt_sparse_ns.viewer.errors",
    "ReconstructionFolderError": "vggt_sparse_ns.viewer.errors",
    "SceneData": "vggt_sparse_ns.viewer.scene",
    "ViewerConfig": "vggt_sparse_ns.viewer.config",
    "ViewerError": "vggt_sparse_ns.viewer.errors",
    "ViewerHandle": "vggt_sparse_ns.viewer.server",
    "load_scene": "vggt_sparse_ns.viewer.scene",
    "serve_reconstruction": "vggt_sparse_ns.viewer.server",
    "start_viewer": "vggt_sparse_ns.viewer.server",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
