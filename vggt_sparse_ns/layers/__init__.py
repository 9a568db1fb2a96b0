"""Transformer building blocks shared by VGGT and MegaLoc (DINOv2-style ViT layers)."""

from vggt_sparse_ns.layers.attention import AttendFn, Attention, sdpa_attend
from vggt_sparse_ns.layers.block import Block, LayerScale, Mlp
from vggt_sparse_ns.layers.rope import RotaryEmbedding2D, grid_positions
from vggt_sparse_ns.layers.vit import VisionTransformer

__all__ = [
    "AttendFn",
    "Attention",
    "Block",
    "LayerScale",
    "Mlp",
    "RotaryEmbedding2D",
    "VisionTransformer",
    "grid_positions",
    "sdpa_attend",
]
