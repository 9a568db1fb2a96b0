"""The one error reporter of every command: how a run that does not finish ends (README, "When the input is
wrong").

Exit statuses: 0 done; 1 the input cannot make a dataset or be viewed (one line ``Error: ...`` on stderr, no
traceback; an unexpected error also exits 1, after its traceback); 2 the command line itself is wrong (tyro's
usage message); 130 Ctrl+C (SIGINT) and 143 SIGTERM, after one line that says what was left in the output
folder. Raising SystemExit ourselves matters: nerfstudio's ns-process-data entrypoint turns RuntimeError and
ValueError into a printed line and exit status 0.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from vggt_sparse_ns.interrupts import held_signals, signals_as_interrupted

INPUT_ERROR_STATUS = 1
STDERR = Console(stderr=True, soft_wrap=True, highlight=False)


def interrupted_status(signal_number: int) -> int:
    """128 + the signal's number, as shells report a process stopped by a signal: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signal_number


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean the input is wrong (or a resource is missing): reported as one line."""
    from vggt_sparse_ns.evaluate.errors import EvaluationError
    from vggt_sparse_ns.export.config import ExportError
    from vggt_sparse_ns.hub import CheckpointMismatchError, WeightsUnavailableError
    from vggt_sparse_ns.images import ImageLoadError
    from vggt_sparse_ns.pipeline.errors import InputError, ReconstructionOutOfMemoryError
    from vggt_sparse_ns.refine.config import RefineError
    from vggt_sparse_ns.viewer.errors import ViewerError

    return (
        InputError,
        ImageLoadError,
        WeightsUnavailableError,
        CheckpointMismatchError,
        ReconstructionOutOfMemoryError,
        ExportError,
        ViewerError,
        EvaluationError,
        RefineError,
    )


def print_interrupted(signal_number: int, detail: str = "") -> None:
    """The one line of a command stopped by ``signal_number``, completed by ``detail`` (what the output holds)."""
    name = "Ctrl+C" if signal_number == signal.SIGINT else signal.Signals(signal_number).name
    STDERR.print(f"[bold yellow]Interrupted ({name}).[/bold yellow] {escape(detail)}".rstrip())


def print_error(message: str, detail: str = "") -> None:
    """The one line ``Error: message detail`` on stderr (``detail``: what the output holds, say)."""
    STDERR.print(f"[bold red]Error:[/bold red] {escape(message)} {escape(detail)}".rstrip())


def fail(message: str) -> NoReturn:
    """Print ``Error: message`` on stderr and exit with status 1."""
    print_error(message)
    raise SystemExit(INPUT_ERROR_STATUS)


def report_error(error: BaseException, *, verbose: bool = False) -> NoReturn:
    """End with ``error``: its traceback first when it is unexpected (or with ``verbose``), then ``Error: ...``
    and exit status 1. To be called from an ``except`` block (the traceback is the one being handled)."""
    if verbose or not isinstance(error, _user_errors()):
        STDERR.print_exception()
    fail(str(error))


@contextmanager
def reported(*, verbose: bool = False, after_interrupt: Callable[[], str] = lambda: "") -> Iterator[None]:
    """Run a command's work: SIGTERM is raised like Ctrl+C (``Interrupted``), and whatever stops the work ends
    the process with one message and the status above (with ``verbose``, user errors show their traceback
    too). ``after_interrupt()`` completes the line printed on an interrupt (what the output folder holds), which
    an interrupt ``reported_elsewhere`` (another process of the run failed and said why) goes without. A
    second signal while the work is already ending (its cleanup, the line, an exit passing through an enclosing
    ``reported``) changes nothing: one line, the first signal's status."""
    try:
        with signals_as_interrupted():
            yield
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt.__context__, SystemExit):  # a second signal as the work was already ending
            raise interrupt.__context__ from None
        number = getattr(interrupt, "signal_number", signal.SIGINT)
        if not getattr(interrupt, "reported_elsewhere", False):
            with held_signals() as arrived:  # a second Ctrl+C (or SIGTERM) changes neither the line nor the status
                print_interrupted(number, after_interrupt())
                arrived.clear()
        raise SystemExit(interrupted_status(number)) from None
    except Exception as error:
        report_error(error, verbose=verbose)
