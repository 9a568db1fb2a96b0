"""How many processes --gpus asks for and what it refuses; only the command's own processes share frames out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from process_tree import ended_within
from sharded_runs import reconstruct_in_group

from vggt_sparse_ns.distributed.launch import SIGNAL_PASS_ON_SECONDS, STOP_GRACE_SECONDS, requested_processes, spawn
from vggt_sparse_ns.pipeline.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def test_one_gpu_is_one_process_everywhere():
    assert requested_processes(1, "auto") == 1


def test_on_the_cpu_a_number_of_gpus_starts_that_many_cpu_processes():
    assert requested_processes(3, "cpu") == 3


def test_all_gpus_without_a_gpu_is_one_process():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    assert requested_processes("all", "auto") == 1


def test_more_gpus_than_visible_are_refused_naming_what_is_visible():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    with pytest.raises(InputError, match="--gpus 2 was asked for, but PyTorch sees 0 CUDA GPU"):
        requested_processes(2, "auto")


def test_fewer_than_one_gpu_is_refused():
    with pytest.raises(InputError, match="--gpus must be at least 1"):
        requested_processes(0, "cpu")


@pytest.mark.slow
def test_reconstruct_in_a_process_group_another_program_started_reconstructs_every_frame_in_each_process(
    vggt_tiny_dir, tmp_path
):
    """Only the command's own rank 0 shares frames out (--gpus, torchrun of ns-process-data-vggt)."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for index in range(3):
        pixels = np.random.default_rng(index).integers(0, 256, (28, 42, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / f"view_{index}.png")
    assert spawn(partial(reconstruct_in_group, vggt_tiny_dir, image_dir, tmp_path), 2, timeout=120.0) == 0
    assert [torch.load(tmp_path / f"frames.rank{rank}.pt") for rank in range(2)] == [3, 3]


def run_interrupted_launch(moment: str, tmp_path: Path) -> subprocess.Popen:
    helper = Path(__file__).with_name("interrupted_launch.py")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(helper.parent)])}
    command = [sys.executable, str(helper), moment, str(tmp_path / "marker")]
    return subprocess.Popen(
        command, cwd=tmp_path, env=environment, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_markers(tmp_path: Path, processes: int) -> None:
    """Until each process of the launch has written its marker (it waits to be interrupted from then)."""
    markers = [tmp_path / f"marker.{rank}" for rank in range(processes)]
    deadline = time.monotonic() + 60
    while not all(marker.exists() for marker in markers) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_sigterm_passed_on_to_a_process_still_starting_is_reported_in_one_line_with_status_143(
    tmp_path: Path,
) -> None:
    process = run_interrupted_launch("while-importing", tmp_path)
    _, stderr = ended_within(process, 120)

    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines() == ["Interrupted (SIGTERM)."]


def test_a_second_ctrl_c_while_the_launcher_passes_the_first_on_changes_nothing(tmp_path: Path) -> None:
    process = run_interrupted_launch("in-command", tmp_path)
    wait_for_markers(tmp_path, 1)
    process.send_signal(signal.SIGINT)
    time.sleep(SIGNAL_PASS_ON_SECONDS / 5)  # within the launcher's wait before it passes the first on
    process.send_signal(signal.SIGINT)
    _, stderr = ended_within(process, 120)

    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["Interrupted (Ctrl+C)."]


def test_ctrl_c_ends_a_run_whose_follower_never_answers_signals_within_seconds_with_one_line_and_status_130(
    tmp_path: Path,
) -> None:
    """A process blocked in C code (a collective whose peer is stuck) never runs its handler: it is killed."""
    process = run_interrupted_launch("follower-never-answers", tmp_path)
    wait_for_markers(tmp_path, 2)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl+C in a terminal: every process of the job gets it
    _, stderr = ended_within(process, SIGNAL_PASS_ON_SECONDS + STOP_GRACE_SECONDS + 20)

    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["Interrupted (Ctrl+C)."]
    assert not (tmp_path / "marker.output").exists()


def test_ctrl_c_ends_a_run_whose_rank_0_never_answers_by_killing_it_and_undoing_its_output_in_one_line(
    tmp_path: Path,
) -> None:
    process = run_interrupted_launch("leader-never-answers", tmp_path)
    wait_for_markers(tmp_path, 2)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = ended_within(process, SIGNAL_PASS_ON_SECONDS + STOP_GRACE_SECONDS + 20)

    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["Interrupted (Ctrl+C). rank 0's output was removed."]
    assert not (tmp_path / "marker.output").exists()
