"""Ctrl+C and SIGTERM as one exception, and holding them back while a step must not be cut in two."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (Ctrl+C: SIGINT, or SIGTERM). A KeyboardInterrupt, so that whatever
    cleans up after Ctrl+C also cleans up after SIGTERM."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


def _raise_interrupted(signal_number: int, frame: object) -> None:
    if isinstance(sys.exc_info()[1], KeyboardInterrupt):
        return  # the run is already ending on an interrupt, in a cleanup (__exit__, except, finally): let it finish
    raise Interrupted(signal_number)


@contextmanager
def signals_as_interrupted() -> Iterator[None]:
    """Within the block (main thread only), SIGINT and SIGTERM raise ``Interrupted``, except while an interrupt
    is being handled: a signal that arrives during the cleanup after Ctrl+C (an ``__exit__``, ``except`` or
    ``finally`` block, from its first instruction on) is dropped, so that it cannot cut that cleanup short (a
    staging folder left behind, say) and the first signal decides how the run ends. The previous handlers come
    back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _raise_interrupted) for number in HELD_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def held_signals() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM back for the block (main thread only: Python runs handlers there). Yields the
    list of the signals that arrived, for the block to act on (``stop_if_signalled``); afterwards the previous
    handlers are restored and the first signal still in the list is delivered to them."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    arrived: list[int] = []
    previous = {number: signal.signal(number, lambda number, frame: arrived.append(number)) for number in HELD_SIGNALS}
    try:
        yield arrived
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if arrived:
            signal.raise_signal(arrived[0])


def stop_if_signalled(arrived: list[int]) -> None:
    """Raise ``Interrupted`` for the first held signal, taking it off the list (it is not delivered again)."""
    if arrived:
        raise Interrupted(arrived.pop(0))
