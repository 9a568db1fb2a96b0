"""Fused GPU kernels (Triton), each with its plain-PyTorch reference in the calling module."""

from __future__ import annotations

import torch
from torch import Tensor


def triton_available(x: Tensor) -> bool:
    """Whether Triton kernels can run on x's device and dtype (CUDA, half precision, Triton installed)."""
    if not x.is_cuda or x.dtype not in (torch.bfloat16, torch.float16):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
