"""Fused GPU kernels (Triton), each with its plain-PyTorch reference in the calling module."""

from __future__ import annotations

import functools

import torch
from torch import Tensor


@functools.cache
def triton_installed() -> bool:
    """Whether Triton can be imported (it is optional: CPU and MPS run without it)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_available(x: Tensor) -> bool:
    """Whether Triton kernels can run on x's device and dtype (CUDA, half precision, Triton installed)."""
    return x.is_cuda and x.dtype in (torch.bfloat16, torch.float16) and triton_installed()
