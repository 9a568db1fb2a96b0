"""The reconstruction pipeline: image files -> VGGT predictions -> a Reconstruction on the host.

Names are imported on first use so that the CLI and the nerfstudio plugins can import the
configuration without loading torch and the model.
"""

from __future__ import annotations

from vggt_sparse_ns.lazy import lazy_attributes

_EXPORTS = {
    "Reconstruction": "vggt_sparse_ns.pipeline.reconstruction",
    "ReconstructionConfig": "vggt_sparse_ns.pipeline.config",
    "ReconstructionOutOfMemoryError": "vggt_sparse_ns.pipeline.errors",
    "InputError": "vggt_sparse_ns.pipeline.errors",
    "reconstruct": "vggt_sparse_ns.pipeline.run",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
