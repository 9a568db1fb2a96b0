"""DINOv2-style Vision Transformer: VGGT's patch embedder (ViT-L/14 + 4 registers) and
MegaLoc's backbone (ViT-B/14, no registers) with their checkpoints' parameter names."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vggt_sparse_ns.layers.attention import NormImplementation
from vggt_sparse_ns.layers.block import Block


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: [B, 3, H, W] -> [B, (H/p)*(W/p), C]."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """Tokens are [cls, registers, patches]; the learned position embedding of a square
    grid is resampled bicubically to the input's grid (registers get none)."""

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        init_values: float | None = 1.0,
        num_register_tokens: int = 0,
        interpolate_antialias: bool = False,
        interpolate_offset: float = 0.1,
        mask_token: bool = True,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset
        self.num_prefix_tokens = 1 + num_register_tokens
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        )
        # Unused at inference; kept so that the published checkpoints load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim)) if mask_token else None
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, norm_eps=1e-6) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def position_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        """The [1, 1 + grid_h*grid_w, C] position embedding for a grid_h x grid_w patch grid."""
        stored = self.pos_embed.shape[1] - 1
        side = int(math.sqrt(stored))
        if grid_h == side and grid_w == side:
            return self.pos_embed
        dim = self.pos_embed.shape[-1]
        table = self.pos_embed.float()
        patch_table = table[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            scale = ((grid_h + self.interpolate_offset) / side, (grid_w + self.interpolate_offset) / side)
            resized = F.interpolate(
                patch_table, scale_factor=scale, mode="bicubic", antialias=self.interpolate_antialias
            )
        else:
            resized = F.interpolate(
                patch_table, size=(grid_h, grid_w), mode="bicubic", antialias=self.interpolate_antialias
            )
        resized = resized.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat((table[:, :1], resized), dim=1).to(self.pos_embed.dtype)

    def forward(self, images: Tensor, norm_implementation: NormImplementation = "auto") -> Tensor:
        """Normalised tokens [B, 1 + registers + patches, C] of normalised images [B, 3, H, W]; the blocks'
        norms run by ``norm_implementation``."""
        batch, _, height, width = images.shape
        patches = self.patch_embed(images)
        tokens = torch.cat((self.cls_token.expand(batch, -1, -1).to(patches.dtype), patches), dim=1)
        tokens = tokens + self.position_embedding(height // self.patch_size, width // self.patch_size).to(tokens.dtype)
        if self.register_tokens is not None:
            registers = self.register_tokens.expand(batch, -1, -1).to(tokens.dtype)
            tokens = torch.cat((tokens[:, :1], registers, tokens[:, 1:]), dim=1)
        for block in self.blocks:
            tokens = block(tokens, norm_implementation=norm_implementation)
        return self.norm(tokens)
