"""2D rotary position embedding on a patch grid (VGGT's RoPE, base frequency 100).

Each head's features are split in two halves: the first half is rotated by the token's row
(y), the second by its column (x). Special tokens sit at position (0, 0), where the rotation
is the identity. The cos/sin tables are built once per forward for the T tokens of a frame
and broadcast over frames, so global attention over S*T tokens costs no extra tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def grid_positions(grid_h: int, grid_w: int, device: torch.device | None = None) -> Tensor:
    """Integer (y, x) coordinates of a row-major patch grid, shape [grid_h * grid_w, 2]."""
    ys = torch.arange(grid_h, device=device)
    xs = torch.arange(grid_w, device=device)
    return torch.cartesian_prod(ys, xs)


def _rotate_halves(x: Tensor) -> Tensor:
    """Map each (a, b) half-pair of both axis blocks to (-b, a): the RoPE quarter turn."""
    blocks = x.unflatten(-1, (2, 2, x.shape[-1] // 4))
    first, second = blocks.unbind(-2)
    return torch.stack((-second, first), dim=-2).flatten(-3)


@dataclass(frozen=True)
class RopeTable:
    """cos/sin tables [T, head_dim] for the T tokens of one frame."""

    cos: Tensor
    sin: Tensor

    def apply(self, x: Tensor) -> Tensor:
        """Rotate x [..., L, head_dim] where L is a whole number of frames of T tokens."""
        tokens_per_frame = self.cos.shape[0]
        frames = x.unflatten(-2, (x.shape[-2] // tokens_per_frame, tokens_per_frame))
        rotated = frames * self.cos + _rotate_halves(frames) * self.sin
        return rotated.flatten(-3, -2)


class RotaryEmbedding2D(torch.nn.Module):
    """Builds RoPE tables for 2D token positions; holds no parameters."""

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = base

    def table(self, positions: Tensor, head_dim: int, dtype: torch.dtype) -> RopeTable:
        """Tables for integer positions [T, 2] (y, x) at the given head dimension."""
        axis_dim = head_dim // 2
        exponents = torch.arange(0, axis_dim, 2, device=positions.device).float() / axis_dim
        inv_freq = 1.0 / (self.base**exponents)
        cos_parts, sin_parts = [], []
        for axis in range(2):
            angles = positions[:, axis].float()[:, None] * inv_freq[None, :]
            angles = torch.cat((angles, angles), dim=-1)
            cos_parts.append(angles.cos())
            sin_parts.append(angles.sin())
        return RopeTable(torch.cat(cos_parts, -1).to(dtype), torch.cat(sin_parts, -1).to(dtype))
