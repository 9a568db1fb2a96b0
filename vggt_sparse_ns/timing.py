"""The one stage timer: seconds per named stage of a run or of a forward pass, work timed beside a stage, and
the accelerator's peak memory. Light to import (torch only once CUDA events are recorded): the CLI builds
one before anything heavy loads."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

COMMUNICATION_STAGE = "communication"
"""The stage of the time spent exchanging tensors where frames are shared out between processes: packing them
and the collectives, waiting for the slowest process included."""


class StageTimer:
    """Accumulates elapsed time per named stage, in the order stages first ran.

    A stage opened inside another takes its time out of the outer one: each moment counts for the innermost
    open stage, so the stages' seconds add up to the time they cover. With ``device`` "cuda" it records CUDA
    events and reads them only in ``seconds()`` (a forward pass is not synchronised in the middle); otherwise
    it reads the host clock. ``on_start(name)`` is called as each stage begins (the CLI shows it as a status
    line). Work that runs in another thread while a stage goes on is timed apart (``beside``), so that
    ``total_seconds`` stays wall-clock time.

    Example:
        >>> timer = StageTimer()
        >>> with timer.stage("load"):
        ...     pass
        >>> list(timer.seconds())
        ['load']
    """

    def __init__(self, device: torch.device | str = "cpu", on_start: Callable[[str], None] | None = None) -> None:
        self.cuda = str(device).split(":")[0] == "cuda"
        self.on_start = on_start
        self.peak_memory_bytes: int | None = None
        """Peak memory allocated on a CUDA device during the run (``record_peak_memory``); None when not measured."""
        self.ranks: list[dict[str, Any]] | None = None
        """Where several processes ran the model (distributed/reconstruct.py): each one's figures (rank, device,
        frames, seconds per stage, communication seconds, peak memory), in rank order; None for one process."""
        self._spans: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
        self._open: list[str] = []
        self._span_start: Any = None
        self._beside: dict[str, tuple[str, float]] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (added to earlier runs of the same stage)."""
        if self.on_start is not None:
            self.on_start(name)
        self._end_span()
        self._open.append(name)
        self._span_start = self._now()
        try:
            yield
        finally:
            self._end_span()
            self._open.pop()
            self._span_start = self._now() if self._open else None

    @contextmanager
    def beside(self, name: str, running: str) -> Iterator[None]:
        """Time ``name`` on the host clock, run in a thread while stage ``running`` goes on (no ``on_start``:
        that stage has its status line)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self._beside[name] = (running, time.perf_counter() - start)

    def _now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _end_span(self) -> None:
        """Credit the time since the last mark to the innermost open stage."""
        if self._open:
            self._spans[self._open[-1]].append((self._span_start, self._now()))

    def seconds(self) -> dict[str, float]:
        """Total seconds per stage, in the order stages first ran (a stage still open: up to its last mark)."""
        if not self.cuda:
            return {stage: sum(end - start for start, end in spans) for stage, spans in self._spans.items()}
        import torch

        torch.cuda.synchronize()
        return {stage: sum(s.elapsed_time(e) for s, e in spans) / 1000 for stage, spans in self._spans.items()}

    def seconds_beside(self) -> dict[str, tuple[str, float]]:
        """name -> (the stage it ran beside, its seconds)."""
        return dict(self._beside)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds().values())

    def record_peak_memory(self, peak_bytes: int | None) -> None:
        if peak_bytes is not None:
            self.peak_memory_bytes = max(self.peak_memory_bytes or 0, peak_bytes)


def stage_of(timer: StageTimer | None) -> Callable[[str], AbstractContextManager[None]]:
    """``timer.stage``, or a stand-in that times nothing when no timer is given."""
    return timer.stage if timer is not None else _untimed


@contextmanager
def _untimed(stage: str) -> Iterator[None]:
    yield
