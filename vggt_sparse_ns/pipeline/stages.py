"""Timing the stages of a run and the accelerator's peak memory, with an optional callback per stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class StageLog:
    """Wall-clock seconds per named stage, in order; ``on_start(name)`` is called as each stage begins
    (the CLI shows it as a status line). Work that runs in a thread beside a stage is timed apart, in
    ``beside``, so that ``total_seconds`` stays the run's wall-clock time."""

    def __init__(self, on_start: Callable[[str], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.beside: dict[str, tuple[str, float]] = {}
        """name -> (the stage it ran beside, its seconds)."""
        self.peak_memory_bytes: int | None = None
        """Peak memory allocated on a CUDA device during the run; None on CPU and MPS (not measured)."""
        self.on_start = on_start
        self.ranks: list[dict[str, Any]] | None = None
        """Where several processes ran the model (distributed/reconstruct.py): each one's report (rank, frames,
        seconds per stage, communication seconds, peak memory), in rank order; None for one process."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.on_start is not None:
            self.on_start(name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @contextmanager
    def stage_beside(self, name: str, running: str) -> Iterator[None]:
        """Time ``name``, run in a thread while stage ``running`` goes on (no status line: that stage has it)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.beside[name] = (running, time.perf_counter() - start)

    def record_peak_memory(self, peak_bytes: int | None) -> None:
        if peak_bytes is not None:
            self.peak_memory_bytes = max(self.peak_memory_bytes or 0, peak_bytes)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())
