"""Fused GPU kernels (Triton), each with its plain-PyTorch reference in the calling module."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

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


def fused_kernel_may_replace(x: Tensor, *modules: nn.Module) -> bool:
    """Whether a fused kernel may replace the plain work on x with the ``modules``' parameters: the fused
    kernels are enabled here, and no gradient is wanted (the fused kernels have no backward)."""
    wants_gradients = torch.is_grad_enabled() and (
        x.requires_grad or any(parameter.requires_grad for module in modules for parameter in module.parameters())
    )
    return fused_kernels_enabled() and not wants_gradients


def triton_available(x: Tensor) -> bool:
    """Whether Triton kernels can run on x's device and dtype (CUDA, half precision, Triton installed)."""
    return x.is_cuda and x.dtype in (torch.bfloat16, torch.float16) and triton_installed()
