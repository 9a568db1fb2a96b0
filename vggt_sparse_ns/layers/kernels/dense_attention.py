"""Dense softmax attention on Hopper, faster than cuDNN's SDPA at the head dim VGGT uses (64).

At head dim 64 the softmax's exponentials cost as much time as both matrix products, so a kernel
that runs them one after the other leaves the tensor cores idle half the time. This one is written
in Gluon (Triton's tile-level language with explicit warps, barriers and asynchronous wgmma): a
producer warp streams key/value tiles by TMA, and three consumer warpgroups take turns on the tensor
cores, each computing its softmax while the next one's products run. Measured at the dense
200-frame 518x518 shape on an H200: 524 TFLOP/s against cuDNN's 409, with cuDNN's error
(docs/benchmarks/README.md). Triton is imported lazily: the package works without it (CPU, MPS),
and ``supports`` says when the kernel runs.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

HEAD_DIM = 64
BLOCK_N = 128
STAGES = 3
CONSUMER_REGISTERS = 160
MAX_REGISTERS = 128
"""Per-thread registers at launch (12 warps fill the register file); the producer warp then gives
its registers up to the consumers (CONSUMER_REGISTERS each)."""


def dense_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention of every query over every key, per (batch, head): q, k, v [B, heads, L, 64] of one
    half-precision dtype on a Hopper GPU (see ``supports``). Returns [B, heads, L, 64] in q's dtype, as
    ``F.scaled_dot_product_attention(q, k, v)`` would."""
    if not supports(q, k, v):
        raise ValueError("dense_attention needs what supports() checks: see its docstring")
    batch, heads, length, head_dim = q.shape
    rows = batch * heads * length
    q2, k2, v2 = (t.reshape(rows, head_dim).contiguous() for t in (q, k, v))
    out = torch.empty_like(q2)
    kernel = _kernel()
    rows_per_warpgroup = kernel.ROWS.value
    grid = (-(-length // (kernel.CONSUMERS.value * rows_per_warpgroup)), batch * heads)
    kernel.dense_attention_kernel[grid](
        _descriptor(q2, rows_per_warpgroup), _descriptor(k2, BLOCK_N), _descriptor(v2, BLOCK_N), out, length,
        math.log2(math.e) / math.sqrt(head_dim), HEAD_DIM=head_dim, BLOCK_N=BLOCK_N, STAGES=STAGES,
        CONSUMER_REGISTERS=CONSUMER_REGISTERS, num_warps=4, maxnreg=MAX_REGISTERS,
    )  # fmt: skip
    return out.view(batch, heads, length, head_dim)


def supports(q: Tensor, k: Tensor, v: Tensor) -> bool:
    """Whether the kernel takes these inputs: q, k, v of one shape [B, heads, L, 64] (self-attention) and one
    dtype (bfloat16 or float16) on a CUDA device of compute capability 9.0 (Hopper: wgmma and register
    reallocation), fewer than 2^31 rows in all (TMA coordinates), and Triton with Gluon installed."""
    tensors = (q, k, v)
    if any(t.dim() != 4 or t.shape != q.shape or t.dtype != q.dtype or not t.is_cuda for t in tensors):
        return False
    if q.dtype not in (torch.bfloat16, torch.float16) or q.shape[-1] != HEAD_DIM or q.numel() == 0:
        return False
    if q.numel() // HEAD_DIM >= 2**31 or torch.cuda.get_device_capability(q.device) != (9, 0):
        return False
    return _gluon_available()


@functools.cache
def _gluon_available() -> bool:
    try:
        from triton.experimental.gluon import language as gl
        from triton.experimental.gluon.language.nvidia.hopper import warpgroup_mma  # noqa: F401
    except ImportError:
        return False
    return hasattr(gl, "warp_specialize")


def _descriptor(x: Tensor, block_rows: int):
    """A TMA descriptor of x [rows, 64] read in [block_rows, 64] tiles, swizzled for wgmma."""
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    block = [block_rows, x.shape[-1]]
    layout = gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16 if x.dtype == torch.bfloat16 else gl.float16)
    return TensorDescriptor(x, list(x.shape), list(x.stride()), block, layout)


@functools.cache
def _kernel():
    from vggt_sparse_ns.layers.kernels import _dense_attention_gluon

    return _dense_attention_gluon
