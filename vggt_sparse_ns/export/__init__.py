"""Exporters: pure functions from a Reconstruction's arrays to nerfstudio and COLMAP files.

``export_dataset`` is the one way in for the CLI; the modules below are usable on their own.
Conventions (frames, axes, pixels, depth units) are written down in docs/conventions.md.
Names are imported on first use so that the nerfstudio plugins can import ``ExportConfig``
without loading the writers, PIL and torch.
"""

from __future__ import annotations

from vggt_sparse_ns.lazy import lazy_attributes

_EXPORTS = {
    "ExportConfig": "vggt_sparse_ns.export.config",
    "ExportError": "vggt_sparse_ns.export.config",
    "ExportSummary": "vggt_sparse_ns.export.dataset",
    "export_dataset": "vggt_sparse_ns.export.dataset",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
