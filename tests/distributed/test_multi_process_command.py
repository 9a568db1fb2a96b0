"""The command on several CPU processes (torchrun, --gpus) writes the dataset one process writes, frame graph
included."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from process_tree import ended_within, spawned_ranks

REPOSITORY = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = Path(sys.executable).with_name("ns-process-data-vggt")
EXACT = 1e-5
RUN_TIMEOUT = 300
ENDS_WITHIN_SECONDS = 30
"""How soon a run on two processes has ended once one is killed (or Ctrl+C comes), cleanup included."""


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Five small images; the last is taller, so only the last process holds the scene's largest image and the
    others must pad theirs to it."""
    folder = tmp_path_factory.mktemp("scene") / "images"
    folder.mkdir()
    for index, height in enumerate((24, 24, 24, 24, 40)):
        pixels = np.random.default_rng(index).integers(0, 256, (height, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"view_{index:02d}.png")
    return folder


def run(command: list[str], images: Path, output: Path, vggt_tiny_dir: Path, megaloc_tiny_dir: Path) -> None:
    """The command on the tiny models: covisibility attention (one neighbour each: a sparse graph of the 5 frames)
    from MegaLoc's descriptors, which each process computes for its frames."""
    arguments = ["--data", str(images), "--output-dir", str(output), "--device", "cpu", "--attention", "covisibility"]
    arguments += ["--neighbors", "1", "--descriptors", "megaloc", "--megaloc-checkpoint", str(megaloc_tiny_dir)]
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    result = subprocess.run(
        [*command, *arguments, "--checkpoint", str(vggt_tiny_dir)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=RUN_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def one_process_dataset(images, vggt_tiny_dir, megaloc_tiny_dir, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("one") / "dataset"
    run([str(CONSOLE_SCRIPT)], images, output, vggt_tiny_dir, megaloc_tiny_dir)
    return output


def assert_same_dataset(dataset: Path, reference: Path, rank_frames: list[list[int]]) -> None:
    frames = json.loads((dataset / "transforms.json").read_text())["frames"]
    expected = json.loads((reference / "transforms.json").read_text())["frames"]
    assert [frame["file_path"] for frame in frames] == [frame["file_path"] for frame in expected]
    for key in ("transform_matrix", "fl_x", "fl_y", "cx", "cy"):
        values = np.array([frame[key] for frame in frames])
        reference_values = np.array([frame[key] for frame in expected])
        assert np.abs(values - reference_values).max() <= EXACT * np.abs(reference_values).max(), key
    assert sorted(path.name for path in dataset.iterdir()) == sorted(path.name for path in reference.iterdir())
    graph = json.loads((dataset / "vggt" / "graph.json").read_text())
    assert graph == json.loads((reference / "vggt" / "graph.json").read_text())
    assert len(graph["edges"]) < 5 * 4 / 2  # sparse: not every pair of the 5 frames
    ranks = json.loads((dataset / "vggt" / "summary.json").read_text())["ranks"]
    assert [rank["frames"] for rank in ranks] == rank_frames
    assert all(rank["communication_seconds"] > 0 and rank["seconds"]["inference"] > 0 for rank in ranks)


@pytest.mark.slow
def test_torchrun_with_two_processes_writes_the_dataset_one_process_writes(
    images, one_process_dataset, vggt_tiny_dir, megaloc_tiny_dir, tmp_path
):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    run([*torchrun, str(CONSOLE_SCRIPT)], images, tmp_path / "dataset", vggt_tiny_dir, megaloc_tiny_dir)
    assert_same_dataset(tmp_path / "dataset", one_process_dataset, [[0, 3], [3, 5]])


@pytest.mark.slow
def test_gpus_three_on_the_cpu_starts_three_processes_that_write_the_dataset_one_process_writes(
    images, one_process_dataset, vggt_tiny_dir, megaloc_tiny_dir, tmp_path
):
    run([str(CONSOLE_SCRIPT), "--gpus", "3"], images, tmp_path / "dataset", vggt_tiny_dir, megaloc_tiny_dir)
    assert_same_dataset(tmp_path / "dataset", one_process_dataset, [[0, 2], [2, 4], [4, 5]])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes)."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.slow
def test_more_processes_than_attention_heads_stop_with_one_message_and_leave_the_previous_dataset_as_it_was(
    images, one_process_dataset, vggt_tiny_dir, tmp_path
):
    output = tmp_path / "dataset"
    shutil.copytree(one_process_dataset, output)
    before = snapshot(output)
    arguments = ["--data", str(images), "--output-dir", str(output), "--device", "cpu", "--gpus", "5"]
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), *arguments, "--checkpoint", str(vggt_tiny_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        timeout=RUN_TIMEOUT,
    )
    messages = " ".join((result.stdout + result.stderr).split())  # the console wraps long lines
    assert result.returncode == 1
    assert messages.count("Error:") == 1 and "use at most 4 processes" in messages, messages
    assert "Traceback" not in messages, messages
    assert snapshot(output) == before
    assert [path.name for path in tmp_path.iterdir()] == ["dataset"]  # no staging folder beside it


def start_a_two_process_run(images: Path, output: Path, vggt_tiny_dir: Path) -> subprocess.Popen:
    """The command on two CPU processes, its output captured, in its own process group (as a terminal's
    foreground job)."""
    arguments = ["--data", str(images), "--output-dir", str(output), "--device", "cpu", "--gpus", "2"]
    return subprocess.Popen(
        [str(CONSOLE_SCRIPT), *arguments, "--checkpoint", str(vggt_tiny_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("to_every_process", "number", "status", "line"),
    [(True, signal.SIGINT, 130, "Interrupted (Ctrl+C)."), (False, signal.SIGTERM, 143, "Interrupted (SIGTERM).")],
    ids=["ctrl_c_in_a_terminal", "sigterm_to_the_launcher"],
)
def test_a_signal_during_a_run_on_two_processes_ends_it_with_one_line_and_leaves_the_previous_dataset_as_it_was(
    to_every_process, number, status, line, images, one_process_dataset, vggt_tiny_dir, tmp_path
):
    output = tmp_path / "dataset"
    shutil.copytree(one_process_dataset, output)
    before = snapshot(output)
    command = start_a_two_process_run(images, output, vggt_tiny_dir)
    staging = tmp_path / ".dataset.vggt-staging"
    deadline = time.monotonic() + RUN_TIMEOUT
    while not staging.exists() and command.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert staging.exists(), "rank 0 never began its dataset"
    if to_every_process:
        os.killpg(command.pid, number)  # what Ctrl+C in a terminal does: every process of the job gets it
    else:
        command.send_signal(number)  # the launcher only: it passes the signal on
    messages, _ = ended_within(command, ENDS_WITHIN_SECONDS)
    assert command.returncode == status, messages
    assert messages.count(line) == 1 and "Traceback" not in messages, messages
    assert snapshot(output) == before
    assert [path.name for path in tmp_path.iterdir()] == ["dataset"]


@pytest.mark.slow
@pytest.mark.parametrize("killed_rank", [0, 1], ids=["rank_0", "rank_1"])
def test_a_process_killed_during_a_run_on_two_processes_ends_it_with_one_error_and_leaves_the_previous_dataset(
    killed_rank, images, one_process_dataset, vggt_tiny_dir, tmp_path
):
    """As the out-of-memory killer would: the process cannot clean up or say why, so the launcher does both."""
    output = tmp_path / "dataset"
    shutil.copytree(one_process_dataset, output)
    before = snapshot(output)
    command = start_a_two_process_run(images, output, vggt_tiny_dir)
    staging = tmp_path / ".dataset.vggt-staging"
    ranks: list[int] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    while not staging.exists() and command.poll() is None and time.monotonic() < deadline:
        ranks = ranks if len(ranks) == 2 else spawned_ranks(command.pid)
        time.sleep(0.01)
    assert staging.exists() and len(ranks) == 2, "rank 0 never began its dataset"
    os.kill(ranks[killed_rank], signal.SIGKILL)
    messages, _ = ended_within(command, ENDS_WITHIN_SECONDS)
    lines = " ".join(messages.split())  # the console wraps long lines
    assert command.returncode == 128 + signal.SIGKILL, messages
    assert lines.count("Error:") == 1 and f"rank {killed_rank} ended abruptly (SIGKILL" in lines, messages
    assert "Interrupted" not in messages and "Traceback" not in messages, messages
    assert snapshot(output) == before
    assert [path.name for path in tmp_path.iterdir()] == ["dataset"]
