"""Refinement of VGGT's cameras against the images: SIFT features matched on the frame graph's pairs,
verified tracks, triangulation from the predicted cameras and bundle adjustment (pycolmap).

``refine`` is the one way in; the modules are composable steps (features, pairs, matching, verification,
triangulation, adjustment, consistency). Names load on first use, so the CLI can import ``RefineConfig``
without torch or pycolmap.
"""

from __future__ import annotations

from vggt_sparse_ns.lazy import lazy_attributes

_EXPORTS = {
    "RefineConfig": "vggt_sparse_ns.refine.config",
    "RefineError": "vggt_sparse_ns.refine.config",
    "refine": "vggt_sparse_ns.refine.refinement",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
