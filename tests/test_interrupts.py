"""Ctrl+C and SIGTERM as one exception; a second signal never cuts the cleanup after the first one short."""

from __future__ import annotations

import signal

import pytest

from vggt_sparse_ns.interrupts import Interrupted, signals_as_interrupted


def test_sigint_and_sigterm_raise_interrupted_with_their_number() -> None:
    for number in (signal.SIGINT, signal.SIGTERM):
        with pytest.raises(Interrupted) as interrupt, signals_as_interrupted():
            signal.raise_signal(number)
        assert interrupt.value.signal_number == number


def test_a_second_signal_during_the_cleanup_of_an_interrupt_is_dropped_and_the_cleanup_finishes() -> None:
    cleaned = []
    with pytest.raises(Interrupted) as interrupt, signals_as_interrupted():
        try:
            signal.raise_signal(signal.SIGTERM)
        finally:
            signal.raise_signal(signal.SIGINT)  # at the cleanup's first instruction
            cleaned.append(True)
    assert cleaned == [True]
    assert interrupt.value.signal_number == signal.SIGTERM, "the first signal decides how the run ends"


def test_a_signal_during_the_cleanup_after_an_ordinary_error_still_interrupts() -> None:
    with pytest.raises(Interrupted), signals_as_interrupted():
        try:
            raise RuntimeError("a stage failed")
        finally:
            signal.raise_signal(signal.SIGINT)
