"""The command's console output: a stage's spinner and Ctrl+C."""

from __future__ import annotations

import signal

import pytest
from rich.console import Console

from vggt_sparse_ns.interrupts import Interrupted, signals_as_interrupted
from vggt_sparse_ns.nerfstudio.report import StageSpinner


def test_ctrl_c_while_a_stage_spinner_starts_is_raised_once_it_has_started_and_it_stops_cleanly(monkeypatch):
    """Raised half-way through rich's start (where the command's stage line has just been printed), the
    interrupt left a display whose stop failed with IndexError and a traceback."""
    show_cursor = Console.show_cursor

    def show_cursor_interrupted(console: Console, show: bool = True) -> bool:
        if not show:  # rich's start hides the cursor after it has begun setting up its live display
            signal.raise_signal(signal.SIGINT)
        return show_cursor(console, show)

    monkeypatch.setattr(Console, "show_cursor", show_cursor_interrupted)
    spinner = StageSpinner()
    with pytest.raises(Interrupted), signals_as_interrupted(), spinner:
        spinner("load images")
