"""A launcher (spawn) interrupted at chosen moments, run as its own program by tests/distributed/test_launch.py:
``python interrupted_launch.py MOMENT MARKER`` exits with spawn's status.

MOMENT ``while-importing``: the one process spawn starts sends SIGTERM to the launcher while it is still being
unpickled (importing, before any code of ours runs in it), and stays there a while, so that the SIGTERM passed
on reaches it there. ``in-command``: the process writes MARKER and waits to be interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from functools import partial
from pathlib import Path

from vggt_sparse_ns.distributed.launch import spawn
from vggt_sparse_ns.interrupts import signals_as_interrupted

PASSED_ON_WITHIN_SECONDS = 1.0
"""Longer than the launcher takes to pass SIGTERM on."""


def _signal_launcher_and_stay(signal_number: int) -> None:
    os.kill(os.getppid(), signal_number)
    time.sleep(PASSED_ON_WITHIN_SECONDS)


class SignalsLauncherWhenUnpickled:
    """Unpickled in the started process as it starts: sends the launcher ``signal_number`` from there."""

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number

    def __reduce__(self) -> tuple:
        return _signal_launcher_and_stay, (self.signal_number,)


def wait_to_be_interrupted(marker: Path, *probes: object) -> None:
    marker.write_text("waiting")
    time.sleep(60)


def main(moment: str, marker: Path) -> int:
    probes = [SignalsLauncherWhenUnpickled(signal.SIGTERM)] if moment == "while-importing" else []
    with signals_as_interrupted():  # as run_command runs spawn
        return spawn(partial(wait_to_be_interrupted, marker, *probes), 1, timeout=60)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
