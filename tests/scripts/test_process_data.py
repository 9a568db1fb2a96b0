"""``ns-process-data-vggt`` reports Ctrl+C and SIGTERM with one line from its first moment: while it is still
loading its machinery (tyro, nerfstudio, torch), not only once the run has begun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SIGNAL_WHILE_LOADING = textwrap.dedent(
    """
    import os, sys

    signal_number = int(sys.argv[1])

    class SignalOnImport:
        '''Sends the signal to this process as the command begins importing the module named.'''

        def find_spec(self, name, path=None, target=None):
            if name == "vggt_sparse_ns.nerfstudio.process_data":
                os.kill(os.getpid(), signal_number)
            return None

    sys.meta_path.insert(0, SignalOnImport())
    from vggt_sparse_ns.scripts.process_data import entrypoint

    sys.argv = ["ns-process-data-vggt", "--data", sys.argv[2], "--output-dir", sys.argv[3]]
    entrypoint()
    """
)


@pytest.mark.parametrize(
    ("signal_number", "status", "name"), [(signal.SIGINT, 130, "Ctrl+C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_a_signal_while_the_command_loads_prints_one_line_and_exits_with_its_status(
    signal_number: int, status: int, name: str, tmp_path: Path
) -> None:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", SIGNAL_WHILE_LOADING, str(signal_number), str(tmp_path / "photos"), "out"]
    process = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)

    assert process.returncode == status, process.stderr
    assert process.stderr.strip().splitlines() == [f"Interrupted ({name})."]
    assert list(tmp_path.iterdir()) == [], "nothing written"


SIGNAL_AS_THE_PROCESS_EXITS = textwrap.dedent(
    """
    import atexit, os, signal, sys
    from vggt_sparse_ns.scripts.process_data import entrypoint

    atexit.register(os.kill, os.getpid(), int(sys.argv[1]))  # after the command has ended, as the interpreter exits
    sys.argv = ["ns-process-data-vggt", "--help"]
    entrypoint()
    """
)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_the_command_has_ended_changes_neither_its_status_nor_its_output(
    signal_number: int, tmp_path: Path
) -> None:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", SIGNAL_AS_THE_PROCESS_EXITS, str(signal_number)]
    process = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)

    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
