"""MegaLoc (gmberton/MegaLoc, MIT): a place-recognition network whose global descriptors tell
which images show the same place. A DINOv2 ViT-B/14 without registers (the project's shared
VisionTransformer) feeds its normalised class and patch tokens to an optimal-transport
aggregator; the output is an L2-normalised descriptor per image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from vggt_sparse_ns.hub import config_from_mapping
from vggt_sparse_ns.layers.vit import VisionTransformer
from vggt_sparse_ns.sparse.megaloc.aggregator import DescriptorAggregator


@dataclass(frozen=True)
class MegaLocConfig:
    """Architecture of a MegaLoc model (defaults: the published gberton/MegaLoc)."""

    embed_dim: int = 768
    """Backbone token width."""
    depth: int = 12
    """Backbone transformer blocks."""
    num_heads: int = 12
    """Backbone attention heads."""
    mlp_ratio: float = 4.0
    """Backbone MLP hidden width over token width."""
    img_size: int = 518
    """Side of the square image the position embedding was trained at."""
    patch_size: int = 14
    num_clusters: int = 64
    """Clusters of the optimal-transport aggregation."""
    cluster_dim: int = 256
    """Width of each cluster's pooled feature."""
    token_dim: int = 256
    """Width of the projected class token."""
    mlp_dim: int = 512
    """Hidden width of the aggregator's MLPs."""
    feat_dim: int = 8448
    """Descriptor size."""

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MegaLocConfig:
        """Build from a config.json mapping, ignoring keys that are not hyper-parameters (``seed``, ``note``)."""
        return config_from_mapping(cls, values)


def patch_multiple_size(height: int, width: int, patch_size: int = 14) -> tuple[int, int]:
    """The nearest multiple of the patch size per side, as the original rounds (Python's
    round: halves go to the even multiple)."""
    size = (round(height / patch_size) * patch_size, round(width / patch_size) * patch_size)
    if min(size) == 0:
        raise ValueError(f"image size {height}x{width} is too small for {patch_size}-px patches")
    return size


def resize_images(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize with antialiasing (what torchvision's tensor resize does), a no-op at the same size."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)


class MegaLoc(nn.Module):
    """ImageNet-normalised images [B, 3, H, W] -> L2-normalised descriptors [B, feat_dim].
    Sides that are not multiples of the patch size are first resized to the nearest ones."""

    def __init__(self, config: MegaLocConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = VisionTransformer(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            num_register_tokens=0,
            interpolate_antialias=False,
            interpolate_offset=0.1,
            mask_token=False,
        )
        self.aggregator = DescriptorAggregator(
            config.embed_dim,
            config.num_clusters,
            config.cluster_dim,
            config.token_dim,
            config.mlp_dim,
            config.feat_dim,
        )

    def forward(self, images: Tensor) -> Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"MegaLoc expects images [B, 3, H, W], got {tuple(images.shape)}")
        images = resize_images(images, patch_multiple_size(*images.shape[-2:], self.config.patch_size))
        tokens = self.backbone(images)  # normalised [B, 1 + P, C]: class token, then patches
        descriptors = self.aggregator(tokens[:, 1:], tokens[:, 0])
        return F.normalize(descriptors.float(), dim=-1)


def build_megaloc(config: MegaLocConfig | Mapping[str, Any] | None = None) -> MegaLoc:
    """A MegaLoc with the given architecture (a MegaLocConfig, a config.json mapping, or the published model)."""
    return MegaLoc(config_from_mapping(MegaLocConfig, config))
