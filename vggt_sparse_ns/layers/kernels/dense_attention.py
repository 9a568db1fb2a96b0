"""Dense softmax attention on Hopper, faster than cuDNN's SDPA at the head dim VGGT uses (64).

At head dim 64 the softmax's exponentials cost as much time as both matrix products, so a kernel that
runs them one after the other leaves the tensor cores idle half the time. Dense attention here is the
warp-specialised Gluon frame-list kernel (frame_list_attention.py) with one frame that lists itself: a
producer warp streams key/value tiles by TMA, and three consumer warpgroups take turns on the tensor
cores, each computing its softmax while the next one's products run. Measured at the dense 200-frame
518x518 shape on an H200: 524 TFLOP/s against cuDNN's 409, with cuDNN's error
(docs/benchmarks/README.md). ``not_supported_reasons`` says when it cannot run; dense attention then runs
PyTorch's SDPA (sparse/dense.py chooses).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from vggt_sparse_ns.layers.kernels import DeviceCapabilities
from vggt_sparse_ns.layers.kernels.frame_list_attention import (
    FrameLists,
    frame_list_attention,
    gluon_not_supported_reasons,
)


def dense_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Softmax attention of every query over every key, per (batch, head): q, k, v [B, heads, L, 64] of one
    half-precision dtype on a Hopper GPU (see ``not_supported_reasons``). Returns [B, heads, L, 64] in q's
    dtype, as ``F.scaled_dot_product_attention(q, k, v)`` would."""
    reasons = not_supported_reasons(q, k, v, DeviceCapabilities.of(q.device))
    if reasons:
        raise ValueError(f"dense_attention cannot take these inputs: {'; '.join(reasons)}")
    batch, heads, length, head_dim = q.shape
    q3, k3, v3 = (t.reshape(batch * heads, length, head_dim) for t in (q, k, v))
    out = frame_list_attention(q3, k3, v3, _one_frame(q.device), length, 0, False, implementation="gluon")
    return out.view(batch, heads, length, head_dim)


def not_supported_reasons(q: Tensor, k: Tensor, v: Tensor, capabilities: DeviceCapabilities) -> list[str]:
    """Why the kernel cannot take these inputs on a device with these capabilities (none: it can): q, k, v
    of one shape [B, heads, L, 64] (self-attention), none empty, and what ``gluon_not_supported_reasons``
    asks of each (batch, head) sequence."""
    if any(t.dim() != 4 or t.shape != q.shape for t in (q, k, v)) or q.numel() == 0:
        return ["q, k and v must be [B, heads, L, head_dim] of one shape, not empty"]
    reasons = ["its tensor descriptors need fewer than 2^31 rows"] if q.shape[:3].numel() >= 2**31 else []
    return reasons + gluon_not_supported_reasons(q[0], k[0], v[0], False, capabilities)


@functools.cache
def _one_frame(device: torch.device) -> FrameLists:
    """The frame list of a sequence taken as one frame that attends to itself."""
    return FrameLists.from_csr(torch.tensor([0, 1]), torch.tensor([0]), device)
