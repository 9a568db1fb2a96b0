"""Waiting for a launcher and the processes it started, in tests that signal or kill them."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest


def ended_within(process: subprocess.Popen, seconds: float) -> tuple[str, str]:
    """``process.communicate()`` once the launcher and every process holding its output have ended; the test
    fails (and the process group, started with ``start_new_session``, is killed) if that takes over ``seconds``."""
    try:
        return process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"the launcher and its processes had not ended within {seconds} s")


def spawned_ranks(launcher_pid: int) -> list[int]:
    """The process ids of the ranks the launcher started, in rank order (it starts them in that order; its
    multiprocessing resource tracker is not one). Linux only."""
    children = Path(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read_text().split()
    ranks = []
    for pid in map(int, children):
        try:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
            start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        if b"spawn_main" in command_line:
            ranks.append((start_ticks, pid))
    return [pid for _, pid in sorted(ranks)]
