"""Ctrl+C and SIGTERM as one exception; a second signal never cuts the cleanup after the first one short; a signal
whose exception was discarded on its way (by C code) can still be acted on."""

from __future__ import annotations

import contextlib
import signal

import pytest

from vggt_sparse_ns.interrupts import (
    Interrupted,
    raise_if_signalled,
    reported_elsewhere_when,
    signals_as_interrupted,
)


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


def discard_the_interrupt_of(signal_number: int) -> None:
    """Deliver ``signal_number`` and drop the ``Interrupted`` it raises, as C code that runs Python can."""
    with contextlib.suppress(KeyboardInterrupt):
        signal.raise_signal(signal_number)


def test_a_signal_whose_interrupt_was_discarded_is_raised_again_where_asked() -> None:
    with pytest.raises(Interrupted) as interrupt, signals_as_interrupted():
        discard_the_interrupt_of(signal.SIGTERM)
        discard_the_interrupt_of(signal.SIGINT)
        raise_if_signalled()
    assert interrupt.value.signal_number == signal.SIGTERM, "the first signal decides how the run ends"


def test_an_error_that_follows_a_signal_within_the_block_ends_it_as_interrupted() -> None:
    with pytest.raises(Interrupted) as interrupt, signals_as_interrupted():
        discard_the_interrupt_of(signal.SIGTERM)
        raise RuntimeError("communication between the processes failed")
    assert interrupt.value.signal_number == signal.SIGTERM
    assert isinstance(interrupt.value.__context__, RuntimeError)


class SignalledWhileNamed:
    """A class attribute whose ``__set_name__`` receives SIGTERM (Python 3.11 wraps what it raises in a
    RuntimeError: a class defined as the signal came, as in Triton's Gluon modules at import)."""

    def __set_name__(self, owner: type, name: str) -> None:
        signal.raise_signal(signal.SIGTERM)


def test_a_signal_during_a_class_definition_is_interrupted_not_the_error_python_wraps_it_in() -> None:
    with pytest.raises(Interrupted) as interrupt, signals_as_interrupted():

        class Layout:
            field = SignalledWhileNamed()

    assert interrupt.value.signal_number == signal.SIGTERM


def test_without_a_signal_nothing_is_raised_again() -> None:
    with signals_as_interrupted():
        raise_if_signalled()


def test_the_signals_that_came_are_forgotten_when_the_outermost_block_ends() -> None:
    with signals_as_interrupted():
        with signals_as_interrupted():
            discard_the_interrupt_of(signal.SIGTERM)
        with pytest.raises(Interrupted):  # the inner block's end keeps it for the outer one
            raise_if_signalled()
    raise_if_signalled()


def test_an_interrupt_is_reported_elsewhere_when_the_innermost_question_says_so_as_it_is_raised() -> None:
    another_process_failed = []
    with reported_elsewhere_when(lambda: bool(another_process_failed)), signals_as_interrupted():
        with pytest.raises(Interrupted) as before_the_failure:
            signal.raise_signal(signal.SIGTERM)
        another_process_failed.append(True)
        with pytest.raises(Interrupted) as after_the_failure:
            signal.raise_signal(signal.SIGTERM)
        with reported_elsewhere_when(lambda: False), pytest.raises(Interrupted) as asked_again_inside:
            signal.raise_signal(signal.SIGTERM)
    assert not before_the_failure.value.reported_elsewhere
    assert after_the_failure.value.reported_elsewhere
    assert not asked_again_inside.value.reported_elsewhere
    assert not Interrupted(signal.SIGTERM).reported_elsewhere  # outside any block
