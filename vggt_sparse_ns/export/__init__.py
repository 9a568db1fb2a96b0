"""Exporters: pure functions from a Reconstruction's arrays to nerfstudio and COLMAP files.

``export_dataset`` is the one way in for the CLI; the modules below are usable on their own.
Conventions (frames, axes, pixels, depth units) are written down in docs/conventions.md.
"""

from vggt_sparse_ns.export.config import ExportConfig, ExportError
from vggt_sparse_ns.export.dataset import ExportSummary, export_dataset

__all__ = ["ExportConfig", "ExportError", "ExportSummary", "export_dataset"]
