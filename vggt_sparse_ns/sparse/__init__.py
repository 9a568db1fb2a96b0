"""Global-attention strategies for the aggregator, and the frame graph they use."""

from vggt_sparse_ns.sparse.base import AttentionPlan, FrameLayout, GlobalAttention
from vggt_sparse_ns.sparse.dense import DenseAttention

__all__ = ["AttentionPlan", "DenseAttention", "FrameLayout", "GlobalAttention"]
