"""Camera accuracy of an output dataset against a reference (e.g. the user's own COLMAP run).

``evaluate(output, reference)`` reads both camera sets (transforms.json or a COLMAP model), matches
frames by file name, aligns the output to the reference by a Sim(3), and measures relative pose
accuracy, pose AUC, absolute trajectory error and focal-length error. docs/evaluate.md has the recipe.
Names are imported on first use so that `vggt-sparse-ns --help` does not load pycolmap.
"""

from __future__ import annotations

from vggt_sparse_ns.lazy import lazy_attributes

_EXPORTS = {
    "CameraSet": "vggt_sparse_ns.evaluate.cameras",
    "EvaluateConfig": "vggt_sparse_ns.evaluate.config",
    "EvaluationError": "vggt_sparse_ns.evaluate.errors",
    "EvaluationReport": "vggt_sparse_ns.evaluate.report",
    "compare_cameras": "vggt_sparse_ns.evaluate.report",
    "evaluate": "vggt_sparse_ns.evaluate.report",
    "load_cameras": "vggt_sparse_ns.evaluate.cameras",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
