"""Dense global attention: every token attends to every token of every frame (original VGGT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from vggt_sparse_ns.layers.attention import sdpa_attend
from vggt_sparse_ns.sparse.base import FrameLayout


class _DensePlan:
    def __init__(self) -> None:
        self.graphs: list = []

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int) -> Tensor:
        return sdpa_attend(q, k, v)

    def summary(self) -> dict[str, Any]:
        return {"strategy": "dense"}


@dataclass(frozen=True)
class DenseAttention:
    """SDPA over all S*T tokens: O(S^2) in frames. The reference every sparse strategy is checked against."""

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor) -> _DensePlan:
        return _DensePlan()
