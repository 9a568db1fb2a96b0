"""Building a nerfstudio dataset from image files, as one transaction: probing the inputs, reconstructing,
writing images/ and its downscales, exporting, and swapping the new dataset into the output folder.

``nerfstudio/`` adapts it to nerfstudio's command and dataparser; ``output_layout`` names its files. Names are
imported on first use, so that the plugins stay light.
"""

from __future__ import annotations

from vggt_sparse_ns.lazy import lazy_attributes

_EXPORTS = {
    "DatasetReport": "vggt_sparse_ns.dataset.build",
    "DatasetTransaction": "vggt_sparse_ns.dataset.transaction",
    "ImageGroup": "vggt_sparse_ns.dataset.images",
    "Recovery": "vggt_sparse_ns.dataset.transaction",
    "build_dataset": "vggt_sparse_ns.dataset.build",
    "probe_image_folder": "vggt_sparse_ns.dataset.build",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_attributes(__name__, _EXPORTS)
