"""Dense global attention: every token attends to every token of every frame (original VGGT)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor

from vggt_sparse_ns.layers.attention import sdpa_attend
from vggt_sparse_ns.layers.implementations import Implementation, Operation, runs_everywhere
from vggt_sparse_ns.layers.kernels import DeviceCapabilities
from vggt_sparse_ns.layers.kernels.dense_attention import dense_attention, not_supported_reasons
from vggt_sparse_ns.sparse.base import FrameLayout


@dataclass(frozen=True)
class DenseInputs:
    """One global layer's q, k, v [B, heads, L, head_dim] and the capabilities of their device."""

    q: Tensor
    k: Tensor
    v: Tensor
    capabilities: DeviceCapabilities

    @classmethod
    def of(cls, q: Tensor, k: Tensor, v: Tensor) -> DenseInputs:
        return cls(q, k, v, DeviceCapabilities.of(q.device))


DENSE_ATTENTION = Operation[DenseInputs, Callable[[Tensor, Tensor, Tensor], Tensor]](
    "dense attention",
    (
        Implementation("gluon", dense_attention, lambda i: not_supported_reasons(i.q, i.k, i.v, i.capabilities)),
        Implementation("sdpa", sdpa_attend, runs_everywhere),
    ),
)
"""The implementations of dense attention, fastest first (``DenseAttention.implementation`` says what each is)."""

DenseImplementation = Literal["auto", "gluon", "sdpa"]


class _DensePlan:
    def __init__(self, implementation: DenseImplementation) -> None:
        self.implementation = implementation
        self.chosen: Implementation | None = None
        self.graphs: list = []
        self.attends_query_chunks = True

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int, query_frames: slice | None = None) -> Tensor:
        """Chooses the implementation once, at the first layer (every global layer's q, k, v alike), and runs it.
        Every query attends to every key, so a range of query frames needs nothing but its queries; the gluon
        kernel takes all queries only, so attention by query chunks runs by sdpa."""
        if self.chosen is None:
            self.chosen = DENSE_ATTENTION.choose(self.implementation, DenseInputs.of(q, k, v))
        return self.chosen.run(q, k, v)

    def summary(self) -> dict[str, Any]:
        """The strategy and the implementation its layers ran (None before any layer ran)."""
        return {"strategy": "dense", "implementation": self.chosen.name if self.chosen else None}


@dataclass(frozen=True)
class DenseAttention:
    """All S*T tokens attend to each other, as in the original VGGT: O(S^2) in frames.

    The reference every sparse strategy is checked against, and the default of ``VGGT.forward``.

    Example:
        >>> predictions = model(images.cuda(), DenseAttention())
        >>> predictions["attention"]
        {'strategy': 'dense', 'implementation': 'gluon'}
    """

    implementation: DenseImplementation = "auto"
    """auto: the first of gluon, sdpa that can run. gluon: the warp-specialised kernel of layers/kernels/dense_attention.py (Hopper GPUs, bfloat16 or float16, head dim 64, Triton 3.6+ with Gluon, all queries at once: not by query chunks). sdpa: PyTorch's scaled_dot_product_attention (cuDNN first on CUDA)."""

    def __post_init__(self) -> None:
        DENSE_ATTENTION.check_choice(self.implementation)

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor | None) -> _DensePlan:
        return _DensePlan(self.implementation)
