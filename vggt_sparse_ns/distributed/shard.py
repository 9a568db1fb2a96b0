"""Which frames of a scene each process holds, and the collectives over them.

Frames are split into contiguous runs in rank order (the first ``frames % processes`` runs hold one more), so
concatenating the runs in rank order gives the scene's frame order. Attention heads are split the same way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from vggt_sparse_ns.interrupts import raise_if_signalled

PEER_FAILURE_GRACE_SECONDS = 5.0
"""A process whose collective fails waits this long before raising: the failure is nearly always another
process that stopped with its own message, and the launcher (``--gpus``) or torchrun stops the rest meanwhile
(with SIGTERM: ``Interrupted``, silent on ranks > 0), so that one message is shown, not one per process."""


class PeerFailure(RuntimeError):
    """A collective failed: another process stopped (or the connection between them broke)."""


def split_evenly(total: int, parts: int) -> list[slice]:
    """``total`` items as ``parts`` contiguous runs in order; the first ``total % parts`` runs hold one more.

    Example: ``split_evenly(7, 3)`` -> [slice(0, 3), slice(3, 5), slice(5, 7)]."""
    base, extra = divmod(total, parts)
    starts = [part * base + min(part, extra) for part in range(parts + 1)]
    return [slice(starts[part], starts[part + 1]) for part in range(parts)]


@contextmanager
def collective() -> Iterator[None]:
    """Run collectives; a failure becomes PeerFailure after ``PEER_FAILURE_GRACE_SECONDS``, or ``Interrupted`` at
    once where this process was already told to stop (its first ``Interrupted`` lost in C code, see interrupts)."""
    try:
        yield
    except (RuntimeError, dist.DistError) as error:
        raise_if_signalled()
        time.sleep(PEER_FAILURE_GRACE_SECONDS)
        raise PeerFailure(f"communication between the processes failed: {error}") from error


@dataclass(frozen=True)
class FrameShard:
    """This process's share of a scene of ``frames`` frames: the frames ``local`` of ``processes`` runs.

    Example (in each process of a group)::

        shard = FrameShard.of_scene(images.shape[0])
        predictions = model(images[shard.local], strategy, shard=shard)  # this process's frames
    """

    frames: int
    rank: int
    processes: int
    group: Any = None
    """The torch.distributed process group (None: the default group)."""

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.processes:
            raise ValueError(f"rank {self.rank} is not one of {self.processes} processes")
        if self.frames < self.processes:
            raise ValueError(
                f"{self.frames} frames cannot be shared by {self.processes} processes: each needs at least one "
                "frame; use fewer processes (--gpus)"
            )

    @classmethod
    def of_scene(cls, frames: int, group: Any = None) -> FrameShard:
        """The shard of this process in ``group`` (default: the default group, which must be initialised)."""
        return cls(frames, dist.get_rank(group), dist.get_world_size(group), group)

    @property
    def runs(self) -> list[slice]:
        """Each process's frames, in rank order."""
        return split_evenly(self.frames, self.processes)

    @property
    def local(self) -> slice:
        """This process's frames."""
        return self.runs[self.rank]

    def head_runs(self, heads: int) -> list[slice]:
        """Each process's attention heads, in rank order. A head count that the process count does not divide
        is split unevenly; fewer heads than processes is refused."""
        if heads < self.processes:
            raise ValueError(
                f"the global attention has {heads} heads, fewer than the {self.processes} processes that would each "
                f"attend with some of them: use at most {heads} processes (--gpus)"
            )
        return split_evenly(heads, self.processes)

    def gather_frames(self, local: Tensor, dim: int = 1) -> Tensor:
        """Every process's ``local`` (its frames along ``dim``) -> the scene's, in frame order, on every process."""
        counts = [run.stop - run.start for run in self.runs]
        if local.shape[dim] != counts[self.rank]:
            raise ValueError(f"expected {counts[self.rank]} frames along dim {dim}, got {local.shape[dim]}")
        longest = max(counts)
        padding = list(local.shape)
        padding[dim] = longest - counts[self.rank]
        padded = torch.cat((local, local.new_zeros(padding)), dim=dim).contiguous()
        parts = [torch.empty_like(padded) for _ in counts]
        with collective():
            dist.all_gather(parts, padded, group=self.group)
        return torch.cat([part.narrow(dim, 0, count) for part, count in zip(parts, counts, strict=True)], dim=dim)

    def maximum(self, values: Tensor) -> Tensor:
        """The elementwise maximum of ``values`` over the processes, on every process."""
        values = values.clone()
        with collective():
            dist.all_reduce(values, op=dist.ReduceOp.MAX, group=self.group)
        return values
