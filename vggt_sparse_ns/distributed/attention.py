"""Global attention over frames shared out between processes: all-to-all around any strategy's plan.

Each process computes q, k, v [B, heads, its tokens, head dim] for its own frames. Attention needs every frame,
but each head is independent, so an all-to-all turns "my frames, all heads" into "all frames, my heads"; the
process runs the strategy's plan for the whole scene on its heads (dense, covisibility over the same frame
graph, ...), and a second all-to-all turns the output back. Frame descriptors are all-gathered first, so that
every process builds the identical frame graph. The result is the one-process attention, exactly: the same
arithmetic per head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from vggt_sparse_ns.distributed.shard import FrameShard, collective
from vggt_sparse_ns.sparse.base import AttentionPlan, FrameLayout, GlobalAttention
from vggt_sparse_ns.sparse.descriptors import pooled_descriptors
from vggt_sparse_ns.timing import COMMUNICATION_STAGE, StageTimer, stage_of


def all_to_all(parts: list[Sequence[Tensor]], receive_shapes: list[tuple[int, ...]], group: Any = None) -> list[Tensor]:
    """Send the tensors ``parts[r]``, one after another, to process r and receive from each process r a tensor of
    ``receive_shapes[r]``: one all_to_all_single over flat buffers (one copy in, no copy out), so the parts may
    differ in size."""
    pieces = [piece for part in parts for piece in part]
    send = pieces[0].new_empty(sum(piece.numel() for piece in pieces))
    offset = 0
    for piece in pieces:
        send[offset : offset + piece.numel()].view(piece.shape).copy_(piece)
        offset += piece.numel()
    sizes = [int(torch.Size(shape).numel()) for shape in receive_shapes]
    receive = send.new_empty(sum(sizes))
    with collective():
        dist.all_to_all_single(receive, send, sizes, [sum(piece.numel() for piece in part) for part in parts], group)
    return [flat.view(shape) for flat, shape in zip(receive.split(sizes), receive_shapes, strict=True)]


class _ShardedPlan:
    def __init__(self, inner: AttentionPlan, shard: FrameShard, layout: FrameLayout, timer: StageTimer | None) -> None:
        self.inner = inner
        self.shard = shard
        self.graphs = inner.graphs
        tokens = layout.tokens_per_frame
        self.token_runs = [slice(run.start * tokens, run.stop * tokens) for run in shard.runs]
        self.stage = stage_of(timer)
        self.attends_query_chunks = False
        """Each process sends all its frames' q, k, v at once: the global layers attend all queries together."""

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int) -> Tensor:
        """q, k, v [B, heads, this process's tokens, D] -> attention output of the same shape."""
        head_runs = self.shard.head_runs(q.shape[1])
        with self.stage(COMMUNICATION_STAGE):
            q, k, v = self._to_heads(q, k, v, head_runs)
        out = self.inner(q, k, v, layer)
        with self.stage(COMMUNICATION_STAGE):
            return self._to_frames(out, head_runs)

    def _to_heads(self, q: Tensor, k: Tensor, v: Tensor, head_runs: list[slice]) -> tuple[Tensor, Tensor, Tensor]:
        """This process's tokens of all heads -> all tokens of this process's heads, each [B, h, S*T, D]."""
        batch, _, _, head_dim = q.shape
        mine = head_runs[self.shard.rank]
        parts = [(q[:, heads], k[:, heads], v[:, heads]) for heads in head_runs]
        shapes = [(3, batch, mine.stop - mine.start, run.stop - run.start, head_dim) for run in self.token_runs]
        received = all_to_all(parts, shapes, self.shard.group)
        q, k, v = (torch.cat([part[index] for part in received], dim=2) for index in range(3))
        return q, k, v

    def _to_frames(self, out: Tensor, head_runs: list[slice]) -> Tensor:
        """All tokens of this process's heads -> this process's tokens of all heads [B, heads, its tokens, D]."""
        batch, _, _, head_dim = out.shape
        local = self.token_runs[self.shard.rank]
        parts = [(out[:, :, run],) for run in self.token_runs]
        shapes = [(batch, run.stop - run.start, local.stop - local.start, head_dim) for run in head_runs]
        return torch.cat(all_to_all(parts, shapes, self.shard.group), dim=1)

    def summary(self) -> dict[str, Any]:
        return {**self.inner.summary(), "processes": self.shard.processes}


@dataclass(frozen=True)
class ShardedAttention:
    """``strategy`` over a scene whose frames are shared out as ``shard`` says. The aggregator prepares it with
    this process's frames; the strategy is prepared for the whole scene, from the all-gathered GeM descriptors
    of the frames' patch tokens (where it builds a frame graph from them). Its summary is the strategy's (figures
    counted per head, such as block-sparse's kept fractions, are this process's heads')."""

    strategy: GlobalAttention
    shard: FrameShard
    timer: StageTimer | None = None
    """Receives the time spent in collectives as the stage ``communication``."""

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor) -> _ShardedPlan:
        """layout and patch_tokens [B, n, P, C]: this process's n frames of each scene."""
        local = self.shard.local
        if layout.frames != local.stop - local.start:
            raise ValueError(
                f"this process holds frames {local.start}-{local.stop - 1} of the scene, but the model was given "
                f"{layout.frames}: pass images[shard.local]"
            )
        descriptors = torch.stack([pooled_descriptors(scene) for scene in patch_tokens])
        with stage_of(self.timer)(COMMUNICATION_STAGE):
            descriptors = self.shard.gather_frames(descriptors)
        inner = self.strategy.prepare(replace(layout, frames=self.shard.frames), descriptors)
        return _ShardedPlan(inner, self.shard, layout, self.timer)
