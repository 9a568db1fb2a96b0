"""Per-stage timing of a forward pass without synchronising the GPU in the middle of it."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

COMMUNICATION_STAGE = "communication"
"""The stage of the time spent exchanging tensors where frames are shared out between processes: packing them
and the collectives, waiting for the slowest process included."""


class StageTimer:
    """Accumulates elapsed time per named stage. A stage opened inside another one takes its time out
    of the outer stage: each moment counts for the innermost open stage. On CUDA it records events and
    reads them only in ``seconds()``; elsewhere it uses the host clock."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self._spans: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
        self._open: list[str] = []
        self._span_start: Any = None

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self._end_span()
        self._open.append(stage)
        self._span_start = self._now()
        try:
            yield
        finally:
            self._end_span()
            self._open.pop()
            self._span_start = self._now() if self._open else None

    def _now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _end_span(self) -> None:
        """Credit the time since the last mark to the innermost open stage."""
        if self._open:
            self._spans[self._open[-1]].append((self._span_start, self._now()))

    def seconds(self) -> dict[str, float]:
        """Total seconds per stage, in the order stages first ran."""
        if not self.cuda:
            return {stage: sum(end - start for start, end in spans) for stage, spans in self._spans.items()}
        torch.cuda.synchronize()
        return {stage: sum(s.elapsed_time(e) for s, e in spans) / 1000 for stage, spans in self._spans.items()}


@contextmanager
def untimed(stage: str) -> Iterator[None]:
    """The do-nothing stand-in used when no timer is given."""
    yield
