"""Global-attention strategies for the aggregator, and the frame graph they use."""

from vggt_sparse_ns.sparse.base import AttentionPlan, FrameLayout, GlobalAttention
from vggt_sparse_ns.sparse.block_sparse import BlockSparseAttention
from vggt_sparse_ns.sparse.config import SparseAttentionConfig
from vggt_sparse_ns.sparse.covisibility import CovisibilityAttention
from vggt_sparse_ns.sparse.dense import DenseAttention
from vggt_sparse_ns.sparse.descriptors import pooled_descriptors
from vggt_sparse_ns.sparse.graph import FrameGraph
from vggt_sparse_ns.sparse.graph_build import FrameGraphSettings
from vggt_sparse_ns.sparse.graph_source import FrameGraphSource
from vggt_sparse_ns.sparse.layer_selection import LayerSelection, frame_attention
from vggt_sparse_ns.sparse.megaloc import build_megaloc, load_megaloc

__all__ = [
    "AttentionPlan",
    "BlockSparseAttention",
    "CovisibilityAttention",
    "DenseAttention",
    "FrameGraph",
    "FrameGraphSettings",
    "FrameGraphSource",
    "FrameLayout",
    "GlobalAttention",
    "LayerSelection",
    "SparseAttentionConfig",
    "build_megaloc",
    "frame_attention",
    "load_megaloc",
    "pooled_descriptors",
]
