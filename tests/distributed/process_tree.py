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
    multiprocessing resource tracker is not one). Linux only: read from /proc."""
    ranks = []
    for status_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status_file.read_text().rsplit(")", 1)[1].split()  # after "pid (name)"
            command_line = status_file.with_name("cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        parent, start_ticks = int(fields[1]), int(fields[19])
        if parent == launcher_pid and b"spawn_main" in command_line:
            ranks.append((start_ticks, int(status_file.parent.name)))
    return [pid for _, pid in sorted(ranks)]
