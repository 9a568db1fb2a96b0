"""The aggregator: the patch-embed ViT, then alternating frame and global attention rounds.

Per frame, tokens are [camera, registers, patches]. Frame blocks attend within a frame;
global blocks attend across frames through the global-attention strategy. Only the rounds
the heads read are kept (``keep_layers``), as concat(frame output, global output).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from vggt_sparse_ns.layers.block import Block
from vggt_sparse_ns.layers.rope import RotaryEmbedding2D, grid_positions
from vggt_sparse_ns.layers.vit import VisionTransformer
from vggt_sparse_ns.model.config import VGGTConfig
from vggt_sparse_ns.sparse.base import FrameLayout, GlobalAttention

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AggregatorOutput:
    layers: dict[int, Tensor]
    """Round index -> tokens [B, S, T, 2C] for the kept rounds."""
    patch_start: int
    """Index of the first patch token within a frame (1 camera + registers)."""
    attention: dict[str, Any]
    """The global-attention plan's summary (strategy, graph statistics)."""


class Aggregator(nn.Module):
    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.patch_size = config.patch_size
        self.patch_embed = VisionTransformer(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=dim,
            depth=config.dino_depth,
            num_heads=config.dino_num_heads,
            mlp_ratio=config.dino_mlp_ratio,
            init_values=config.dino_init_values,
            num_register_tokens=config.num_register_tokens,
            interpolate_antialias=config.dino_interpolate_antialias,
            interpolate_offset=config.dino_interpolate_offset,
        )
        # Index 0 along dim 1: the version for frame 0 (the reference); index 1: all other frames.
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, config.num_register_tokens, dim))
        self.patch_start = 1 + config.num_register_tokens

        def make_block() -> Block:
            return Block(
                dim, config.num_heads, config.mlp_ratio, qk_norm=config.qk_norm, init_values=config.aa_init_values
            )

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(config.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(config.depth))
        self.rope = RotaryEmbedding2D(config.rope_freq)
        self.head_dim = dim // config.num_heads

    def special_tokens(self, batch: int, frames: int) -> Tensor:
        """[B, S, 1 + registers, C]: frame 0 gets the reference versions, the others the shared ones."""
        special = torch.cat((self.camera_token, self.register_token), dim=2)
        first = special[:, :1].expand(batch, 1, -1, -1)
        rest = special[:, 1:].expand(batch, frames - 1, -1, -1)
        return torch.cat((first, rest), dim=1)

    def embed_patches(self, images: Tensor) -> Tensor:
        """Images [N, 3, H, W] in [0, 1] -> normalised DINO patch tokens [N, P, C]."""
        mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        normalised = (images - mean) / std
        return self.patch_embed(normalised)[:, self.patch_embed.num_prefix_tokens :]

    def forward(
        self, images: Tensor, global_attention: GlobalAttention, keep_layers: Iterable[int]
    ) -> AggregatorOutput:
        batch, frames, _, height, width = images.shape
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        patch_tokens = self.embed_patches(images.flatten(0, 1)).unflatten(0, (batch, frames))
        tokens = torch.cat((self.special_tokens(batch, frames).to(patch_tokens.dtype), patch_tokens), dim=2)
        tokens_per_frame = tokens.shape[2]
        dim = tokens.shape[-1]
        layout = FrameLayout(batch, frames, tokens_per_frame, self.patch_start)
        plan = global_attention.prepare(layout, patch_tokens)

        positions = grid_positions(grid_h, grid_w, images.device) + 1
        positions = torch.cat((positions.new_zeros(self.patch_start, 2), positions))
        rope = self.rope.table(positions, self.head_dim, torch.float32)

        keep = set(keep_layers)
        kept: dict[int, Tensor] = {}
        x = tokens.reshape(batch, frames * tokens_per_frame, dim)
        for index, (frame_block, global_block) in enumerate(zip(self.frame_blocks, self.global_blocks, strict=True)):
            x = frame_block(x.reshape(batch * frames, tokens_per_frame, dim), rope).reshape(batch, -1, dim)
            frame_out = x
            x = global_block(x, rope, partial(plan, layer=index))
            if index in keep:
                kept[index] = torch.cat((frame_out, x), dim=-1).reshape(batch, frames, tokens_per_frame, 2 * dim)
        return AggregatorOutput(kept, self.patch_start, plan.summary())
