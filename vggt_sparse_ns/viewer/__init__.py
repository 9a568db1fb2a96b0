"""Browser viewer for `ns-process-data vggt-sparse` outputs: points, textured camera frustums, covisibility graph."""

from vggt_sparse_ns.viewer.config import ViewerConfig
from vggt_sparse_ns.viewer.errors import PortInUseError, ReconstructionFolderError, ViewerError
from vggt_sparse_ns.viewer.scene import SceneData, load_scene
from vggt_sparse_ns.viewer.server import ViewerHandle, serve_reconstruction, start_viewer

__all__ = [
    "PortInUseError",
    "ReconstructionFolderError",
    "SceneData",
    "ViewerConfig",
    "ViewerError",
    "ViewerHandle",
    "load_scene",
    "serve_reconstruction",
    "start_viewer",
]
