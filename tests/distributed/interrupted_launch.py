"""A launcher (spawn) interrupted at chosen moments, run as its own program by tests/distributed/test_launch.py:
``python interrupted_launch.py MOMENT MARKER`` exits with spawn's status.

MOMENT ``while-importing``: the one process spawn starts sends SIGTERM to the launcher while it is still being
unpickled (importing, before any code of ours runs in it), and stays there a while, so that the SIGTERM passed
on reaches it there. ``in-command``: the process writes ``MARKER.0`` and waits to be interrupted.
``follower-never-answers`` and ``leader-never-answers``: two processes write ``MARKER.<rank>`` and wait; the one
named never runs a signal handler (as a process blocked in a collective's C code). Rank 0's "output",
``MARKER.output``, is removed by rank 0 as it ends, or by the launcher (``remove_output``) when it kills rank 0.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from functools import partial
from pathlib import Path

from vggt_sparse_ns.distributed.launch import LEADER_CLEANUP_SECONDS, spawn
from vggt_sparse_ns.interrupts import HELD_SIGNALS, signals_as_interrupted

PASSED_ON_WITHIN_SECONDS = 1.0
"""Longer than the launcher takes to pass SIGTERM on."""
LEADER_NEVER_ANSWERS_CLEANUP_SECONDS = 2.0
"""How long the launcher waits for a rank 0 that never answers (the command's wait is longer)."""
NEVER_ANSWERS = {"follower-never-answers": 1, "leader-never-answers": 0}
"""The rank that never answers a signal, by MOMENT."""


def _signal_launcher_and_stay(signal_number: int) -> None:
    os.kill(os.getppid(), signal_number)
    time.sleep(PASSED_ON_WITHIN_SECONDS)


class SignalsLauncherWhenUnpickled:
    """Unpickled in the started process as it starts: sends the launcher ``signal_number`` from there."""

    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number

    def __reduce__(self) -> tuple:
        return _signal_launcher_and_stay, (self.signal_number,)


def wait_to_be_interrupted(marker: Path, *probes: object, never_answers: int | None = None) -> None:
    rank = int(os.environ["RANK"])
    if rank == never_answers:
        signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)  # its handlers never run, as in a blocked C call
    output = Path(f"{marker}.output")
    if rank == 0:
        output.write_text("rank 0's output")
    Path(f"{marker}.{rank}").write_text("waiting")
    try:
        time.sleep(120)
    finally:  # rank 0 removes its output, as a dataset transaction its staging folder
        if rank == 0:
            output.unlink()


def remove_output(marker: Path) -> str:
    """What the launcher runs when it had to kill rank 0: undo rank 0's output, say what is left."""
    Path(f"{marker}.output").unlink(missing_ok=True)
    return "rank 0's output was removed."


def main(moment: str, marker: Path) -> int:
    probes = [SignalsLauncherWhenUnpickled(signal.SIGTERM)] if moment == "while-importing" else []
    never_answers = NEVER_ANSWERS.get(moment)
    target = partial(wait_to_be_interrupted, marker, *probes, never_answers=never_answers)
    processes = 1 if never_answers is None else 2
    leader_cleanup = LEADER_NEVER_ANSWERS_CLEANUP_SECONDS if never_answers == 0 else LEADER_CLEANUP_SECONDS
    recover_output = partial(remove_output, marker)
    with signals_as_interrupted():  # as run_command runs spawn
        return spawn(target, processes, 180, recover_output=recover_output, leader_cleanup_seconds=leader_cleanup)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
