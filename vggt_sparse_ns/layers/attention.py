"""Multi-head self-attention with optional qk-norm and RoPE, and a pluggable attend step.

The layer computes q, k, v and the output projection; *how* queries meet keys is the
``attend`` callable it is given. Frame attention and every global-attention strategy are
such callables, so the layer never knows which one runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from vggt_sparse_ns.layers.kernels import fused_kernel_may_replace, triton_available
from vggt_sparse_ns.layers.kernels.qk_norm_rope import fused_qk_norm_rope
from vggt_sparse_ns.layers.rope import RopeTable

AttendFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""(q, k, v) each [B, heads, L, head_dim] -> output [B, heads, L, head_dim]."""


def sdpa_attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Plain softmax attention of every query over every key (PyTorch SDPA kernels)."""
    return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    """qkv projection, per-head LayerNorm on q and k (optional), RoPE (optional), output projection."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def heads(self, x: Tensor, rope: RopeTable | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v [B, heads, L, head_dim] in the compute dtype (qk-norm and RoPE applied; in one fused kernel
        for inference where the fused kernels are enabled, as that kernel has no backward)."""
        batch, length, _ = x.shape
        qkv = self.qkv(x)
        fusable = rope is not None and isinstance(self.q_norm, nn.LayerNorm)
        if fusable and fused_kernel_may_replace(qkv, self.q_norm, self.k_norm) and triton_available(qkv):
            return fused_qk_norm_rope(qkv, self.num_heads, self.q_norm, self.k_norm, rope.cos, rope.sin)
        qkv = qkv.reshape(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope.apply(q), rope.apply(k)
        return q.to(v.dtype), k.to(v.dtype), v

    def merge(self, out: Tensor) -> Tensor:
        """Attention output [B, heads, L, head_dim] -> projected tokens [B, L, dim]."""
        batch, _, length, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))

    def forward(self, x: Tensor, rope: RopeTable | None = None, attend: AttendFn = sdpa_attend) -> Tensor:
        return self.merge(attend(*self.heads(x, rope)))
