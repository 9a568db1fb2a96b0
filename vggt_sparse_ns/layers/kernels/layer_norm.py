"""LayerNorm of the fp32 residual stream written straight in the compute dtype, in one pass.

Under bf16 autocast, ``nn.LayerNorm`` runs in fp32 and writes fp32 tokens, which the next linear layer
then reads once more to cast them to bf16: two passes and an fp32 copy of every token, before every
attention and MLP branch. Here each row is read once, normalised in fp32 (the same statistics) and
written once in the dtype the linear layer would have cast it to.
Triton is imported lazily: the package works without it (CPU, MPS).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

ROWS_PER_PROGRAM = 4


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def layer_norm_kernel(
        x_ptr, weight_ptr, bias_ptr, out_ptr, rows, x_row_stride, eps,
        COLUMNS: tl.constexpr, BLOCK_COLUMNS: tl.constexpr, BLOCK_ROWS: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
        column = tl.arange(0, BLOCK_COLUMNS)
        in_row = column < COLUMNS
        mask = (row < rows)[:, None] & in_row[None, :]
        row = row.to(tl.int64)[:, None]
        x = tl.load(x_ptr + row * x_row_stride + column[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(x, axis=1) / COLUMNS
        centred = tl.where(mask, x - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1) / COLUMNS + eps)
        weight = tl.load(weight_ptr + column, mask=in_row, other=0.0)
        bias = tl.load(bias_ptr + column, mask=in_row, other=0.0)
        normed = centred * rstd[:, None] * weight[None, :] + bias[None, :]
        tl.store(out_ptr + row * COLUMNS + column[None, :], normed.to(out_ptr.dtype.element_ty), mask=mask)

    return layer_norm_kernel


def layer_norm_to(x: Tensor, norm: nn.LayerNorm, dtype: torch.dtype) -> Tensor:
    """``norm(x).to(dtype)`` in one pass: x [..., C] (C = the norm's one normalised dimension, with its
    weight and bias) on a device Triton runs on; statistics in fp32, the result rounded to ``dtype``."""
    columns = x.shape[-1]
    if norm.normalized_shape != (columns,) or norm.weight is None or norm.bias is None:
        raise ValueError(f"layer_norm_to takes a LayerNorm over the last dimension ({columns}) with weight and bias")
    rows = x.reshape(-1, columns)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    out = torch.empty(x.shape, device=x.device, dtype=dtype)
    if out.numel() == 0:
        return out
    grid = (-(-rows.shape[0] // ROWS_PER_PROGRAM),)
    _kernel()[grid](
        rows, norm.weight.float(), norm.bias.float(), out, rows.shape[0], rows.stride(0), norm.eps,
        COLUMNS=columns, BLOCK_COLUMNS=max(16, 1 << (columns - 1).bit_length()), BLOCK_ROWS=ROWS_PER_PROGRAM,
    )  # fmt: skip
    return out
