"""The reconstruction pipeline: image files -> VGGT predictions -> a Reconstruction on the host."""

from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

__all__ = ["Reconstruction"]
