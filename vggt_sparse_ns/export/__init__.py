"""Exporters: pure functions from a Reconstruction's arrays to nerfstudio and COLMAP files.

``export_dataset`` is the one way in for the CLI; the modules below are usable on their own.
Conventions (frames, axes, pixels, depth units) are written down in docs/conventions.md.
Names are imported on first use so that the nerfstudio plugins can import ``ExportConfig``
without loading the writers, PIL and torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExportConfig": "vggt_sparse_ns.export.config",
    "ExportError": "vggt_sparse_ns.export.config",
    "ExportSummary": "vggt_sparse_ns.export.dataset",
    "export_dataset": "vggt_sparse_ns.export.dataset",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
