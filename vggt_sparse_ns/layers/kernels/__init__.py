"""Fused GPU kernels (Triton), each with its plain-PyTorch reference in the calling module."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

_FUSED_KERNELS = contextvars.ContextVar("fused_kernels", default=True)


@functools.cache
def triton_installed() -> bool:
    """Whether Triton can be imported (it is optional: CPU and MPS run without it)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def use_fused_kernels(enabled: bool) -> Iterator[None]:
    """Within this context, layers take (or, disabled, do not take) the fused kernels that replace plain
    PyTorch work with the same arithmetic: qk-norm + RoPE in one pass, the one-pass LayerNorm."""
    token = _FUSED_KERNELS.set(enabled)
    try:
        yield
    finally:
        _FUSED_KERNELS.reset(token)


def fused_kernels_enabled() -> bool:
    """Whether the fused kernels may run here (see ``use_fused_kernels``; on by default)."""
    return _FUSED_KERNELS.get()


def triton_available(x: Tensor) -> bool:
    """Whether Triton kernels can run on x's device and dtype (CUDA, half precision, Triton installed)."""
    return x.is_cuda and x.dtype in (torch.bfloat16, torch.float16) and triton_installed()
