"""Dense global attention: every token attends to every token of every frame (original VGGT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from vggt_sparse_ns.layers.attention import sdpa_attend
from vggt_sparse_ns.layers.kernels.dense_attention import dense_attention, supports
from vggt_sparse_ns.sparse.base import FrameLayout


class _DensePlan:
    def __init__(self, kernel: str) -> None:
        self.kernel = kernel
        self.kernel_run = kernel
        self.graphs: list = []

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int) -> Tensor:
        use_gluon = self.kernel == "gluon" or (self.kernel == "auto" and supports(q, k, v))
        self.kernel_run = "gluon" if use_gluon else "sdpa"
        return dense_attention(q, k, v) if use_gluon else sdpa_attend(q, k, v)

    def summary(self) -> dict[str, Any]:
        """The strategy and the kernel its layers ran ("gluon" or "sdpa"; the setting before any layer)."""
        return {"strategy": "dense", "kernel": self.kernel_run}


@dataclass(frozen=True)
class DenseAttention:
    """All S*T tokens attend to each other: O(S^2) in frames. The reference every sparse strategy is checked against."""

    kernel: Literal["auto", "gluon", "sdpa"] = "auto"
    """auto: gluon where it runs (Hopper GPUs, bfloat16 or float16, head dim 64, Triton 3.6+ with Gluon), else sdpa. gluon: the warp-specialised kernel of layers/kernels/dense_attention.py. sdpa: PyTorch's scaled_dot_product_attention (cuDNN first on CUDA)."""

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor) -> _DensePlan:
        return _DensePlan(self.kernel)
