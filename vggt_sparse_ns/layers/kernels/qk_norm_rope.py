"""Fused per-head LayerNorm of q and k, 2D RoPE and the cast to the compute dtype, in one pass.

The plain path (Attention.heads) does this in about a dozen fp32 elementwise passes over q and
k; here each token's q and k are read once from the qkv projection and written once. Same
arithmetic: statistics and rotation in fp32, rounded to the compute dtype at the end.
Triton is imported lazily: the package works without it (CPU, MPS).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def qk_norm_rope_kernel(
        qkv_ptr, q_out_ptr, k_out_ptr,
        qw_ptr, qb_ptr, kw_ptr, kb_ptr, cos_ptr, sin_ptr,
        length, tokens_per_frame, heads, eps,
        HEAD_DIM: tl.constexpr, BLOCK_L: tl.constexpr,
    ):  # fmt: skip
        # One program: BLOCK_L tokens of one (batch row, head); writes q and k as [B, heads, L, D].
        pid_l = tl.program_id(0)
        head = tl.program_id(1)
        row = tl.program_id(2)
        tokens = pid_l * BLOCK_L + tl.arange(0, BLOCK_L)
        dims = tl.arange(0, HEAD_DIM)
        partner = dims ^ (HEAD_DIM // 4)  # the other half within each axis block
        sign = tl.where((dims % (HEAD_DIM // 2)) < (HEAD_DIM // 4), -1.0, 1.0)
        mask = tokens[:, None] < length
        dim_total = heads * HEAD_DIM
        in_row = qkv_ptr + row * length * 3 * dim_total + tokens[:, None] * 3 * dim_total
        frame_pos = (tokens % tokens_per_frame)[:, None] * HEAD_DIM
        cos = tl.load(cos_ptr + frame_pos + dims[None, :], mask=mask, other=0.0)
        sin = tl.load(sin_ptr + frame_pos + dims[None, :], mask=mask, other=0.0)
        out_offsets = ((row * heads + head) * length + tokens[:, None]) * HEAD_DIM + dims[None, :]
        for which in tl.static_range(2):
            base = in_row + which * dim_total + head * HEAD_DIM
            x = tl.load(base + dims[None, :], mask=mask, other=0.0).to(tl.float32)
            mean = tl.sum(x, axis=1) / HEAD_DIM
            centred = x - mean[:, None]
            rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / HEAD_DIM + eps)
            w_ptr = qw_ptr if which == 0 else kw_ptr
            b_ptr = qb_ptr if which == 0 else kb_ptr
            normed = centred * rstd[:, None] * tl.load(w_ptr + dims)[None, :] + tl.load(b_ptr + dims)[None, :]
            x_partner = tl.load(base + partner[None, :], mask=mask, other=0.0).to(tl.float32)
            normed_partner = (x_partner - mean[:, None]) * rstd[:, None] * tl.load(w_ptr + partner)[None, :]
            normed_partner += tl.load(b_ptr + partner)[None, :]
            rotated = normed * cos + sign[None, :] * normed_partner * sin
            out_ptr = q_out_ptr if which == 0 else k_out_ptr
            tl.store(out_ptr + out_offsets, rotated.to(out_ptr.dtype.element_ty), mask=mask)

    return qk_norm_rope_kernel


def fused_qk_norm_rope(
    qkv: Tensor,
    heads: int,
    q_norm: torch.nn.LayerNorm,
    k_norm: torch.nn.LayerNorm,
    cos: Tensor,
    sin: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """qkv [B, L, 3 * heads * D] (the qkv projection's output) -> q, k, v [B, heads, L, D].

    q and k: LayerNorm over D with the given norms, then RoPE with per-frame tables cos/sin
    [T, D] (L a multiple of T), in qkv's dtype. v is a strided view into qkv.
    """
    batch, length, width = qkv.shape
    head_dim = width // (3 * heads)
    qkv = qkv.contiguous()
    q = torch.empty(batch, heads, length, head_dim, device=qkv.device, dtype=qkv.dtype)
    k = torch.empty_like(q)
    block = 64
    grid = ((length + block - 1) // block, heads, batch)
    _kernel()[grid](
        qkv, q, k,
        q_norm.weight.float().contiguous(), q_norm.bias.float().contiguous(),
        k_norm.weight.float().contiguous(), k_norm.bias.float().contiguous(),
        cos.float().contiguous(), sin.float().contiguous(),
        length, cos.shape[0], heads, q_norm.eps,
        HEAD_DIM=head_dim, BLOCK_L=block,
    )  # fmt: skip
    v = qkv.view(batch, length, 3, heads, head_dim)[:, :, 2].transpose(1, 2)
    return q, k, v
