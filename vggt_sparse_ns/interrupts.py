"""Ctrl+C and SIGTERM as one exception, and holding them back while a step must not be cut in two.

C code that runs Python can lose the ``Interrupted`` a signal raised there. Both were measured as Triton was
imported: its extension module's initialisation ran our handler and dropped the exception (the process ran on as
if never signalled), and Python 3.11 turned it into ``RuntimeError("Error calling __set_name__ ...")`` as it
was raised during a class definition. The signal is therefore also recorded: an error that follows it within the
block ends the block as ``Interrupted``, and ``raise_if_signalled`` lets code act on it before it fails.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_raised_for: list[int] = []
"""The signals ``_raise_interrupted`` raised ``Interrupted`` for, since the outermost ``signals_as_interrupted``
began (whether or not the exception reached the code it was meant to stop)."""
_reported_elsewhere: list[Callable[[], bool]] = []
"""The innermost ``reported_elsewhere_when`` block's question."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (Ctrl+C: SIGINT, or SIGTERM). A KeyboardInterrupt, so that whatever
    cleans up after Ctrl+C also cleans up after SIGTERM. ``reported_elsewhere``: the signal stops this process
    because another one failed and said why (see ``reported_elsewhere_when``), so this one adds no line."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number
        self.reported_elsewhere = _reported_elsewhere[-1]() if _reported_elsewhere else False


def _raise_interrupted(signal_number: int, frame: object) -> None:
    if isinstance(sys.exc_info()[1], KeyboardInterrupt):
        return  # the run is already ending on an interrupt, in a cleanup (__exit__, except, finally): let it finish
    _raised_for.append(signal_number)
    raise Interrupted(signal_number)


def raise_if_signalled() -> None:
    """Raise ``Interrupted`` again for the first signal of this ``signals_as_interrupted`` block, if one came.
    For code about to report a failure that the signal explains (a collective that failed because the processes
    are being stopped): should the first ``Interrupted`` have been discarded by C code, the run still ends as
    interrupted rather than with a message of its own."""
    if _raised_for:
        raise Interrupted(_raised_for[0])


@contextmanager
def signals_as_interrupted() -> Iterator[None]:
    """Within the block (main thread only), SIGINT and SIGTERM raise ``Interrupted``, except while an interrupt
    is being handled: a signal that arrives during the cleanup after Ctrl+C (an ``__exit__``, ``except`` or
    ``finally`` block, from its first instruction on) is dropped, so that it cannot cut that cleanup short (a
    staging folder left behind, say) and the first signal decides how the run ends: an error that leaves the
    block after a signal came (its ``Interrupted`` turned into that error by C code, or a failure it caused) is
    raised as that ``Interrupted``. The previous handlers come back afterwards; the outermost block forgets the
    signals that came (``raise_if_signalled``) as it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _raise_interrupted) for number in HELD_SIGNALS}
    try:
        yield
    except Exception:
        raise_if_signalled()
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if previous[signal.SIGTERM] is not _raise_interrupted:
            _raised_for.clear()


@contextmanager
def reported_elsewhere_when(already_reported: Callable[[], bool]) -> Iterator[None]:
    """Within the block, an ``Interrupted`` is ``reported_elsewhere`` when ``already_reported()`` says so as it
    is raised: a process of a group, stopped because another process failed with its own message (the launcher
    answers), ends without a line of its own, so that the user sees that one message. ``already_reported`` runs
    inside the signal handler and must take no lock: a second signal while the first's handler held one would
    run the handler again, which would wait for that lock forever."""
    _reported_elsewhere.append(already_reported)
    try:
        yield
    finally:
        _reported_elsewhere.pop()


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
