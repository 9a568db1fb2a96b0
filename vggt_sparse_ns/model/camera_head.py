"""Camera head: iterative refinement of the pose encoding from the last round's camera tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vggt_sparse_ns.layers.block import Block, Mlp

POSE_ENCODING_DIM = 9


class CameraHead(nn.Module):
    """A trunk of blocks over the S camera tokens of a scene, modulated (AdaLN) by the
    embedded current estimate; each iteration adds a predicted delta."""

    def __init__(self, dim: int, trunk_depth: int = 4, num_heads: int = 16, iterations: int = 4) -> None:
        super().__init__()
        self.iterations = iterations
        self.trunk = nn.Sequential(
            *(Block(dim, num_heads, mlp_ratio=4.0, init_values=0.01) for _ in range(trunk_depth))
        )
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim, dim // 2, POSE_ENCODING_DIM)

    def forward(self, camera_tokens: Tensor) -> Tensor:
        """camera_tokens [B, S, dim] -> activated pose encoding [B, S, 9] after the last iteration."""
        tokens = self.token_norm(camera_tokens)
        batch, frames, _ = tokens.shape
        estimate = None
        for _ in range(self.iterations):
            previous = self.empty_pose_tokens.expand(batch, frames, -1) if estimate is None else estimate.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(previous)).chunk(3, dim=-1)
            modulated = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(modulated)))
            estimate = delta if estimate is None else estimate + delta
        # translation and quaternion are linear; the two fields of view go through ReLU
        return torch.cat((estimate[..., :7], F.relu(estimate[..., 7:])), dim=-1)
