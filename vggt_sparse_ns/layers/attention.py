"""Multi-head self-attention with optional qk-norm and RoPE, and a pluggable attend step.

The layer computes q, k, v and the output projection; *how* queries meet keys is the
``attend`` callable it is given. Frame attention and every global-attention strategy are
such callables, so the layer never knows which one runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from vggt_sparse_ns.layers.implementations import Implementation, Operation, runs_everywhere
from vggt_sparse_ns.layers.kernels import DeviceCapabilities, gradient_reasons, triton_reasons
from vggt_sparse_ns.layers.kernels.qk_norm_rope import fused_qk_norm_rope
from vggt_sparse_ns.layers.rope import RopeTable

AttendFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""(q, k, v) each [B, heads, L, head_dim] -> output [B, heads, L, head_dim]."""
NormImplementation = Literal["auto", "triton", "torch"]
"""How the norms of a block run (``QK_NORM_ROPE`` here, ``PRE_NORM`` in block.py): auto (triton where it can run,
else torch), triton (the fused kernels, for inference on CUDA in half precision) or torch (plain PyTorch)."""


@dataclass(frozen=True)
class QkNormRopeInputs:
    """The qkv projection [B, L, 3 * dim] of a layer with per-head LayerNorms on q and k, and RoPE tables."""

    layer: Attention
    qkv: Tensor
    rope: RopeTable
    capabilities: DeviceCapabilities


def _fused_reasons(inputs: QkNormRopeInputs) -> list[str]:
    layer = inputs.layer
    return triton_reasons(inputs.capabilities, inputs.qkv.dtype) + gradient_reasons(
        inputs.qkv, layer.q_norm, layer.k_norm
    )


def _fused_qk_norm_rope(inputs: QkNormRopeInputs) -> tuple[Tensor, Tensor, Tensor]:
    layer, rope = inputs.layer, inputs.rope
    return fused_qk_norm_rope(inputs.qkv, layer.num_heads, layer.q_norm, layer.k_norm, rope.cos, rope.sin)


QK_NORM_ROPE = Operation[QkNormRopeInputs, Callable[[QkNormRopeInputs], tuple[Tensor, Tensor, Tensor]]](
    "qk-norm + RoPE",
    (
        Implementation("triton", _fused_qk_norm_rope, _fused_reasons),
        Implementation("torch", lambda inputs: inputs.layer.plain_heads(inputs.qkv, inputs.rope), runs_everywhere),
    ),
)
"""triton: q and k normed, rotated and cast in one pass (kernels/qk_norm_rope.py; CUDA, half precision,
inference only: the kernel has no backward). torch: about a dozen fp32 elementwise passes."""


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

    def heads(
        self, x: Tensor, rope: RopeTable | None = None, norm_implementation: NormImplementation = "auto"
    ) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v [B, heads, L, head_dim] in the compute dtype, qk-norm and RoPE applied (with both, by the
        ``QK_NORM_ROPE`` implementation chosen for x)."""
        qkv = self.qkv(x)
        if rope is not None and isinstance(self.q_norm, nn.LayerNorm):
            inputs = QkNormRopeInputs(self, qkv, rope, DeviceCapabilities.of(qkv.device))
            return QK_NORM_ROPE.choose(norm_implementation, inputs).run(inputs)
        return self.plain_heads(qkv, rope)

    def plain_heads(self, qkv: Tensor, rope: RopeTable | None) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v from the qkv projection [B, L, 3 * dim] in plain PyTorch: the qk-norms, RoPE, the cast."""
        batch, length, _ = qkv.shape
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

    def forward(
        self,
        x: Tensor,
        rope: RopeTable | None = None,
        attend: AttendFn = sdpa_attend,
        norm_implementation: NormImplementation = "auto",
    ) -> Tensor:
        return self.merge(attend(*self.heads(x, rope, norm_implementation)))
