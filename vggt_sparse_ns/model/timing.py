"""Per-stage timing of a forward pass without synchronising the GPU in the middle of it."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class StageTimer:
    """Accumulates elapsed time per named stage. On CUDA it records events and reads them only
    in ``seconds()``; elsewhere it uses the host clock."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self._events: dict[str, list[tuple[torch.cuda.Event, torch.cuda.Event]]] = defaultdict(list)
        self._host: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events[stage].append((start, end))
        else:
            began = time.perf_counter()
            yield
            self._host[stage] += time.perf_counter() - began

    def seconds(self) -> dict[str, float]:
        """Total seconds per stage, in the order stages first ran."""
        if not self.cuda:
            return dict(self._host)
        torch.cuda.synchronize()
        return {stage: sum(s.elapsed_time(e) for s, e in spans) / 1000 for stage, spans in self._events.items()}


@contextmanager
def untimed(stage: str) -> Iterator[None]:
    """The do-nothing stand-in used when no timer is given."""
    yield
