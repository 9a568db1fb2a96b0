"""Global-attention strategies for the aggregator, and the frame graph they use."""

from vggt_sparse_ns.sparse.base import AttentionPlan, FrameLayout, GlobalAttention
from vggt_sparse_ns.sparse.dense import DenseAttention
from vggt_sparse_ns.sparse.megaloc import build_megaloc, load_megaloc

__all__ = ["AttentionPlan", "DenseAttention", "FrameLayout", "GlobalAttention", "build_megaloc", "load_megaloc"]
