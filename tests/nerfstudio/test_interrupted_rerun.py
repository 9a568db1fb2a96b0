"""A rerun of ``ns-process-data vggt-sparse`` over an existing dataset that fails or is interrupted, at any stage,
leaves the previous dataset byte for byte and nothing beside it; one that succeeds leaves nothing of the old
dataset that it did not make itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from command_stages import STAGES
from image_files import write_scene

import vggt_sparse_ns.dataset.images as images_module
import vggt_sparse_ns.dataset.transaction as transaction_module
from vggt_sparse_ns.dataset import DatasetTransaction
from vggt_sparse_ns.export.config import ExportConfig
from vggt_sparse_ns.nerfstudio import report
from vggt_sparse_ns.nerfstudio.process_data import ProcessVGGTSparse
from vggt_sparse_ns.pipeline.config import ReconstructionConfig

REPO = Path(__file__).resolve().parents[2]


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folder``, by relative path."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() if path.is_file() else None
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def previous_dataset(tmp_path_factory, vggt_tiny_dir: Path) -> Path:
    """A finished dataset of 3 images with depth maps and a COLMAP model, and a file of the user's."""
    root = tmp_path_factory.mktemp("previous")
    out = root / "out"
    ProcessVGGTSparse(
        data=write_scene(root / "photos", count=3)[0].parent,
        output_dir=out,
        num_downscales=1,
        reconstruction=ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"),
        export=ExportConfig(depth=True, colmap=True),
    ).main()
    (out / "notes.txt").write_text("the user's own file")
    return out


@pytest.fixture
def rerun(tmp_path: Path, previous_dataset: Path, vggt_tiny_dir: Path, capsys):
    """rerun(**fields) -> (exit status, stdout, stderr): the command over a copy of the previous dataset, with
    2 other images, depth maps and a COLMAP model by default."""
    out = tmp_path / "out"
    shutil.copytree(previous_dataset, out)
    data = write_scene(tmp_path / "photos", count=2, width=64, height=32)[0].parent
    capsys.readouterr()

    def run(**fields) -> tuple[int, str, str]:
        fields.setdefault("export", ExportConfig(depth=True, colmap=True))
        command = ProcessVGGTSparse(
            data=data,
            output_dir=out,
            num_downscales=1,
            reconstruction=ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"),
            **fields,
        )
        try:
            command.main()
            status = 0
        except SystemExit as exit_:
            status = exit_.code
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


def assert_previous_dataset_untouched(out: Path, previous_dataset: Path) -> None:
    assert snapshot(out) == snapshot(previous_dataset)
    assert sorted(path.name for path in out.parent.iterdir()) == ["out", "photos"], "nothing left beside the output"


def fail_as_stage_begins(monkeypatch, stage: str, error: BaseException) -> None:
    announce = report.StageSpinner.__call__

    def begin(self, name: str) -> None:
        announce(self, name)
        if name == stage:
            raise error

    monkeypatch.setattr(report.StageSpinner, "__call__", begin)


def fail_while_writing_images(monkeypatch, error: BaseException) -> None:
    """The second image written beside inference raises."""
    write_image, written = images_module._write_image, []

    def write(*args) -> None:
        written.append(args)
        if len(written) == 2:
            raise error
        write_image(*args)

    monkeypatch.setattr(images_module, "_write_image", write)


@pytest.mark.parametrize("stage", [*STAGES, "write images"])
def test_an_error_in_any_stage_of_a_rerun_leaves_the_previous_dataset(
    stage: str, rerun, monkeypatch, previous_dataset: Path, tmp_path: Path
) -> None:
    error = RuntimeError(f"injected failure in {stage}")
    if stage == "write images":
        fail_while_writing_images(monkeypatch, error)
    else:
        fail_as_stage_begins(monkeypatch, stage, error)

    status, _, err = rerun()

    assert status == 1 and f"Error: injected failure in {stage}" in err
    assert_previous_dataset_untouched(tmp_path / "out", previous_dataset)


@pytest.mark.parametrize("stage", [*STAGES, "write images"])
def test_ctrl_c_in_any_stage_of_a_rerun_prints_one_line_exits_130_and_leaves_the_previous_dataset(
    stage: str, rerun, monkeypatch, previous_dataset: Path, tmp_path: Path
) -> None:
    if stage == "write images":
        fail_while_writing_images(monkeypatch, KeyboardInterrupt())
    else:
        fail_as_stage_begins(monkeypatch, stage, KeyboardInterrupt())

    status, _, err = rerun()

    assert status == 130
    assert err.strip().splitlines() == [f"Interrupted (Ctrl+C). {tmp_path / 'out'} was left as it was."]
    assert_previous_dataset_untouched(tmp_path / "out", previous_dataset)


def test_a_second_ctrl_c_as_the_cleanup_of_an_interrupted_rerun_begins_leaves_the_previous_dataset_and_no_staging(
    rerun, monkeypatch, previous_dataset: Path, tmp_path: Path
) -> None:
    announce, leave = report.StageSpinner.__call__, DatasetTransaction.__exit__

    def ctrl_c_as_depth_maps_begin(self, name: str) -> None:
        announce(self, name)
        if name == "depth maps":
            signal.raise_signal(signal.SIGINT)

    def second_ctrl_c_then_leave(self, *exc_info):
        signal.raise_signal(signal.SIGINT)  # before the transaction's cleanup holds signals back itself
        return leave(self, *exc_info)

    monkeypatch.setattr(report.StageSpinner, "__call__", ctrl_c_as_depth_maps_begin)
    monkeypatch.setattr(DatasetTransaction, "__exit__", second_ctrl_c_then_leave)

    status, _, err = rerun()

    assert status == 130
    assert err.strip().splitlines() == [f"Interrupted (Ctrl+C). {tmp_path / 'out'} was left as it was."]
    assert_previous_dataset_untouched(tmp_path / "out", previous_dataset)


@pytest.mark.parametrize("failing_rename", [1, 8, 9, 16, 17])
def test_an_error_in_the_middle_of_the_swap_leaves_the_previous_dataset(
    failing_rename: int, rerun, monkeypatch, previous_dataset: Path, tmp_path: Path
) -> None:
    real_rename, calls = os.rename, []

    def rename(source, target) -> None:
        calls.append(source)
        if len(calls) == failing_rename:
            raise OSError("No space left on device")
        real_rename(source, target)

    monkeypatch.setattr(transaction_module.os, "rename", rename)
    status, _, err = rerun()

    assert status == 1 and "No space left on device" in err
    assert_previous_dataset_untouched(tmp_path / "out", previous_dataset)


def test_a_rerun_without_colmap_or_depth_leaves_none_of_the_previous_ones(rerun, tmp_path: Path) -> None:
    status, out_text, err = rerun(export=ExportConfig())

    assert status == 0, out_text + err
    out = tmp_path / "out"
    assert sorted(path.name for path in out.iterdir()) == [
        "images",
        "images_2",
        "notes.txt",
        "sparse_pc.ply",
        "transforms.json",
        "vggt",
    ]
    assert sorted(path.name for path in (out / "images").iterdir()) == ["frame_00001.png", "frame_00002.png"]
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert sorted(path.name for path in out.parent.iterdir()) == ["out", "photos"]


@pytest.mark.slow
def test_a_corrupt_video_as_data_changes_nothing(tmp_path: Path, previous_dataset: Path, vggt_tiny_dir: Path, capsys):
    if shutil.which("ffmpeg") is None:
        pytest.skip("nerfstudio's frame extraction needs ffmpeg")
    out = tmp_path / "out"
    shutil.copytree(previous_dataset, out)
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4096))
    config = ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu")

    for output_dir in (out, tmp_path / "new"):
        with pytest.raises(SystemExit) as exit_info:
            ProcessVGGTSparse(data=video, output_dir=output_dir, reconstruction=config).main()
        assert exit_info.value.code != 0
    assert snapshot(out) == snapshot(previous_dataset)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.mp4", "out"], "no new folder, nothing beside"


DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import vggt_sparse_ns.export.dataset as export_dataset
    from vggt_sparse_ns.scripts.process_data import entrypoint

    marker = Path(sys.argv[1])
    write_depth_maps = export_dataset.write_depth_maps

    def slow_depth_maps(*args, **kwargs):
        result = write_depth_maps(*args, **kwargs)  # the depth maps are written, then the signal comes
        marker.write_text("depth maps written")
        time.sleep(120)
        return result

    export_dataset.write_depth_maps = slow_depth_maps
    sys.argv = ["ns-process-data-vggt", *sys.argv[2:]]
    entrypoint()
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signal_number", "status", "name"), [(signal.SIGINT, 130, "Ctrl+C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_a_real_signal_late_in_a_rerun_leaves_the_previous_dataset(
    signal_number: int, status: int, name: str, tmp_path: Path, previous_dataset: Path, vggt_tiny_dir: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(previous_dataset, out)
    data = write_scene(tmp_path / "photos", count=2, width=64, height=32)[0].parent
    marker = tmp_path / "marker"
    command = [
        sys.executable, "-c", DRIVER, str(marker),
        "--data", str(data), "--output-dir", str(out), "--num-downscales", "1", "--depth", "--colmap",
        "--checkpoint", str(vggt_tiny_dir), "--device", "cpu",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), process.communicate(timeout=10)
        process.send_signal(signal_number)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()

    assert process.returncode == status, stderr
    assert stderr.decode().strip().splitlines() == [f"Interrupted ({name}). {out} was left as it was."]
    assert b"Traceback" not in stdout
    assert snapshot(out) == snapshot(previous_dataset)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["marker", "out", "photos"]


def _rerun_in_a_subprocess(tmp_path: Path, previous_dataset: Path, vggt_tiny_dir: Path, out: Path) -> subprocess.Popen:
    """The command (two photos, depth maps, COLMAP model) started over a copy of the previous dataset at ``out``,
    its output read as text."""
    shutil.copytree(previous_dataset, out)
    data = write_scene(tmp_path / "photos", count=2, width=64, height=32)[0].parent
    command = [
        sys.executable, "-m", "vggt_sparse_ns.scripts.process_data",
        "--data", str(data), "--output-dir", str(out), "--num-downscales", "1", "--depth", "--colmap",
        "--checkpoint", str(vggt_tiny_dir), "--device", "cpu",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _read_until(process: subprocess.Popen, line: str) -> None:
    """Read the process's output until ``line`` has been printed (it must be, before the process ends)."""
    printed = ""
    while line not in printed and process.poll() is None:
        printed += process.stdout.readline()
    assert line in printed, printed


@pytest.mark.slow
@pytest.mark.parametrize("stage_line", ["Load images...", "Point cloud...", "Move into place..."])
def test_ctrl_c_from_outside_as_a_stage_begins_leaves_either_dataset_whole(
    stage_line: str, tmp_path: Path, previous_dataset: Path, vggt_tiny_dir: Path
) -> None:
    """The signal lands wherever the run is when the stage's line is read (no hook in the run): before the
    swap's commit the previous dataset stays, after it the new one is complete; never a mix."""
    out = tmp_path / "out"
    process = _rerun_in_a_subprocess(tmp_path, previous_dataset, vggt_tiny_dir, out)
    try:
        _read_until(process, stage_line)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()

    lines = stderr.strip().splitlines()
    if process.returncode == 0:  # the run ended before the signal was handled
        finished = True
    else:
        assert process.returncode == 130 and len(lines) == 1, stderr
        finished = lines == [f"Interrupted (Ctrl+C). The new dataset in {out} is complete."]
        assert finished or lines == [f"Interrupted (Ctrl+C). {out} was left as it was."]
    if finished:
        assert stage_line == "Move into place...", "only the swap can finish after the signal"
        assert sorted(path.name for path in (out / "images").iterdir()) == ["frame_00001.png", "frame_00002.png"]
        assert (out / "notes.txt").read_text() == "the user's own file"
    else:
        assert snapshot(out) == snapshot(previous_dataset)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "photos"]


@pytest.mark.slow
def test_two_ctrl_c_close_together_from_outside_print_one_line_and_leave_the_previous_dataset_and_no_staging(
    tmp_path: Path, previous_dataset: Path, vggt_tiny_dir: Path
) -> None:
    out = tmp_path / "out"
    process = _rerun_in_a_subprocess(tmp_path, previous_dataset, vggt_tiny_dir, out)
    try:
        _read_until(process, "Depth maps...")
        process.send_signal(signal.SIGINT)
        time.sleep(0.001)  # the second lands while the first is being handled: in the cleanup, or its line
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()

    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == [f"Interrupted (Ctrl+C). {out} was left as it was."]
    assert snapshot(out) == snapshot(previous_dataset)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "photos"], "no staging folder left"


@pytest.mark.slow
def test_what_a_killed_run_leaves_beside_the_output_is_removed_by_the_next_run(
    tmp_path: Path, previous_dataset: Path, vggt_tiny_dir: Path, capsys
) -> None:
    out = tmp_path / "out"
    shutil.copytree(previous_dataset, out)
    data = write_scene(tmp_path / "photos", count=2, width=64, height=32)[0].parent
    command = [
        sys.executable, "-m", "vggt_sparse_ns.scripts.process_data",
        "--data", str(data), "--output-dir", str(out), "--num-downscales", "1",
        "--checkpoint", str(vggt_tiny_dir), "--device", "cpu",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=tmp_path, env=environment, stdout=subprocess.PIPE, text=True)
    try:
        printed = ""
        while "Write ply..." not in printed and process.poll() is None:
            printed += process.stdout.readline()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert snapshot(out) == snapshot(previous_dataset), "killed before the swap: the old dataset is whole"
    assert (tmp_path / ".out.vggt-staging").is_dir(), "a SIGKILL leaves the staging folder"

    ProcessVGGTSparse(
        data=data,
        output_dir=out,
        num_downscales=1,
        reconstruction=ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"),
    ).main()

    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "photos"]
    assert sorted(path.name for path in (out / "images").iterdir()) == ["frame_00001.png", "frame_00002.png"]
