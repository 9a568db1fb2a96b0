"""DatasetTransaction: a new dataset replaces the old one whole, or the old one stays byte for byte, whatever
fails or is interrupted, and nothing is left beside the output folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import vggt_sparse_ns.dataset.transaction as transaction_module
from vggt_sparse_ns.dataset.transaction import DatasetTransaction, Recovery
from vggt_sparse_ns.interrupts import Interrupted, signals_as_interrupted
from vggt_sparse_ns.pipeline.errors import InputError
from vggt_sparse_ns.timing import StageTimer


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``folder``, by relative path."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() if path.is_file() else None
        for path in sorted(folder.rglob("*"))
    }


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


OLD = {
    "images/frame_00001.jpg": "old image",
    "images_2/frame_00001.jpg": "old small image",
    "depth/frame_00001.png": "old depth",
    "colmap/sparse/0/cameras.bin": "old colmap",
    "sparse_pc.ply": "old points",
    "vggt/summary.json": "old summary",
    "transforms.json": "old transforms",
    "my_notes.txt": "the user's own file",
    "photos/a.jpg": "the user's own folder",
}
NEW = {
    "images/frame_00001.jpg": "new image",
    "images/frame_00002.jpg": "new image 2",
    "sparse_pc.ply": "new points",
    "vggt/summary.json": "new summary",
    "transforms.json": "new transforms",
}
NEW_ENTRIES = sorted({name.split("/")[0] for name in NEW})


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    """An output folder holding an old dataset (with depth and COLMAP) and the user's own files."""
    out = tmp_path / "out"
    write(out, OLD)
    return out


def build_new(output_dir: Path, replaces_images: bool = True) -> DatasetTransaction:
    transaction = DatasetTransaction(output_dir, replaces_images=replaces_images)
    with transaction as staging:
        write(staging, NEW)
    return transaction


def test_a_finished_dataset_replaces_every_old_entry_and_keeps_the_users_files(previous: Path) -> None:
    transaction = build_new(previous)

    assert transaction.committed
    expected = {**NEW, "my_notes.txt": OLD["my_notes.txt"], "photos/a.jpg": OLD["photos/a.jpg"]}
    assert {name: data for name, data in snapshot(previous).items() if data is not None} == {
        name: text.encode() for name, text in expected.items()
    }
    assert not (previous / "colmap").exists() and not (previous / "depth").exists(), "not made by the new run"
    assert not (previous / "images_2").exists()
    assert sorted(path.name for path in previous.parent.iterdir()) == ["out"]


def test_images_used_in_place_are_not_part_of_the_swap(previous: Path) -> None:
    transaction = DatasetTransaction(previous, replaces_images=False)
    with transaction as staging:
        write(staging, {"transforms.json": "new transforms"})

    assert (previous / "images" / "frame_00001.jpg").read_text() == "old image"
    assert (previous / "images_2" / "frame_00001.jpg").read_text() == "old small image"
    assert (previous / "transforms.json").read_text() == "new transforms"
    assert not (previous / "depth").exists()


def test_a_new_output_folder_is_made_only_when_the_dataset_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), DatasetTransaction(out, replaces_images=True) as staging:
        write(staging, NEW)
        raise RuntimeError("the model broke")
    assert list(tmp_path.iterdir()) == [], "neither the output folder nor its parents are left"

    build_new(out)
    assert (out / "transforms.json").read_text() == "new transforms"


@pytest.mark.parametrize("error", [RuntimeError("stage failed"), KeyboardInterrupt(), SystemExit(1)])
def test_an_error_while_building_leaves_the_previous_dataset_and_nothing_beside_it(
    previous: Path, error: BaseException
) -> None:
    before = snapshot(previous)
    with pytest.raises(type(error)), DatasetTransaction(previous, replaces_images=True) as staging:
        write(staging, NEW)
        raise error
    assert snapshot(previous) == before
    assert sorted(path.name for path in previous.parent.iterdir()) == ["out"]


def renames_in_a_swap(previous: Path, monkeypatch) -> int:
    """How many renames a swap of NEW over OLD makes (the commit point included)."""
    count = []
    real_rename = os.rename
    monkeypatch.setattr(transaction_module.os, "rename", lambda *args: (count.append(1), real_rename(*args)))
    build_new(previous)
    monkeypatch.setattr(transaction_module.os, "rename", real_rename)
    return len(count)


REAL_RENAME = os.rename


def rename_failing_at(call: int, error: BaseException):
    """An os.rename that raises ``error`` at its ``call``-th call (from 1) and renames at every other."""
    calls = []

    def rename(source, target):
        calls.append(source)
        if len(calls) == call:
            raise error
        REAL_RENAME(source, target)

    return rename


def test_an_error_at_any_rename_of_the_swap_rolls_it_back(tmp_path: Path, monkeypatch) -> None:
    reference = tmp_path / "reference" / "out"
    write(reference, OLD)
    total = renames_in_a_swap(reference, monkeypatch)
    assert total == 7 + 4 + 1  # old entries out, new ones in, the commit point
    for failing in range(1, total + 1):
        out = tmp_path / f"run{failing}" / "out"
        write(out, OLD)
        before = snapshot(out)
        monkeypatch.setattr(
            transaction_module.os, "rename", rename_failing_at(failing, OSError(f"rename {failing} failed"))
        )
        with pytest.raises(OSError, match=f"rename {failing} failed"):
            build_new(out)
        monkeypatch.setattr(transaction_module.os, "rename", REAL_RENAME)
        assert snapshot(out) == before, f"rename {failing}"
        assert sorted(path.name for path in out.parent.iterdir()) == ["out"], f"rename {failing}"


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_swap_is_held_back_and_rolls_it_back(
    previous: Path, monkeypatch, signal_number: int
) -> None:
    before = snapshot(previous)
    real_rename = os.rename
    calls = []

    def rename(source, target):
        calls.append(source)
        real_rename(source, target)
        if len(calls) == 4:  # old entries half moved out
            os.kill(os.getpid(), signal_number)

    def interrupt(number, frame):
        raise KeyboardInterrupt

    monkeypatch.setattr(transaction_module.os, "rename", rename)
    terminate = signal.signal(signal.SIGTERM, interrupt)  # were it delivered, a SIGTERM would end pytest
    try:
        with pytest.raises(KeyboardInterrupt):
            build_new(previous)
    finally:
        signal.signal(signal.SIGTERM, terminate)
    assert snapshot(previous) == before
    assert sorted(path.name for path in previous.parent.iterdir()) == ["out"]


class Killed(BaseException):
    """Stands for SIGKILL: the process stops where it is, no rollback runs."""


def test_the_next_run_undoes_a_swap_that_was_killed_at_any_rename_and_says_whether_the_new_dataset_is_in_place(
    tmp_path: Path, monkeypatch
) -> None:
    reference = tmp_path / "reference" / "out"
    write(reference, OLD)
    total = renames_in_a_swap(reference, monkeypatch)
    real_roll_back = DatasetTransaction._roll_back
    for killed_at in range(1, total + 2):
        out = tmp_path / f"run{killed_at}" / "out"
        write(out, OLD)
        before = snapshot(out)

        def after_commit(*args, **kwargs):
            raise Killed  # killed after the commit point, while deleting the trash

        monkeypatch.setattr(transaction_module.os, "rename", rename_failing_at(killed_at, Killed()))
        monkeypatch.setattr(DatasetTransaction, "_roll_back", lambda *args, **kwargs: None)
        monkeypatch.setattr(DatasetTransaction, "_discard_held", lambda *args, **kwargs: None)
        if killed_at == total + 1:
            monkeypatch.setattr(transaction_module.shutil, "rmtree", after_commit)
        with pytest.raises(Killed):
            build_new(out)
        monkeypatch.undo()
        assert len(list(out.parent.iterdir())) > 1, "the killed run left its folders beside the output"
        assert DatasetTransaction._roll_back is real_roll_back

        found = DatasetTransaction(out, replaces_images=True).recover()

        committed = killed_at > total
        expected = snapshot(reference) if committed else before
        assert snapshot(out) == expected, f"killed at rename {killed_at}"
        assert sorted(path.name for path in out.parent.iterdir()) == ["out"], f"killed at rename {killed_at}"
        assert found is (Recovery.COMPLETED if committed else Recovery.ROLLED_BACK), f"killed at rename {killed_at}"


def test_recovery_says_whether_it_found_a_staging_folder_to_remove_or_nothing(previous: Path) -> None:
    """A run killed while it built its dataset leaves the previous one; a run killed before or after leaves nothing."""
    transaction = DatasetTransaction(previous, replaces_images=True)
    assert transaction.recover() is Recovery.NOTHING_LEFT
    transaction.staging.mkdir()
    write(transaction.staging, NEW)
    before = snapshot(previous)

    assert transaction.recover() is Recovery.ROLLED_BACK
    assert snapshot(previous) == before
    assert sorted(path.name for path in previous.parent.iterdir()) == ["out"]


def test_ctrl_c_just_before_the_swap_begins_leaves_the_previous_dataset_and_no_staging_folder(previous: Path) -> None:
    def announce(stage: str) -> None:
        raise KeyboardInterrupt  # as the swap's stage is announced, before the swap holds signals back

    before = snapshot(previous)
    transaction = DatasetTransaction(previous, replaces_images=True, timer=StageTimer(on_start=announce))
    with pytest.raises(KeyboardInterrupt), transaction as staging:
        write(staging, NEW)
    assert snapshot(previous) == before
    assert sorted(path.name for path in previous.parent.iterdir()) == ["out"]


def test_a_signal_while_the_staging_folder_is_made_removes_it_again(previous: Path, monkeypatch) -> None:
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self.name.endswith("-staging"):
            os.kill(os.getpid(), signal.SIGINT)  # held back until the staging folder exists

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(KeyboardInterrupt), DatasetTransaction(previous, replaces_images=True):
        pytest.fail("the block does not run")
    assert sorted(path.name for path in previous.parent.iterdir()) == ["out"]


def test_a_symlinked_output_folder_is_swapped_beside_its_target(previous: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(previous)
    build_new(link)
    assert link.is_symlink() and (link / "transforms.json").read_text() == "new transforms"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link", "out"]


def test_an_output_folder_whose_parent_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where a folder is needed")
    with pytest.raises(InputError, match="Cannot prepare .* beside the output folder"):
        DatasetTransaction(blocked / "out", replaces_images=True).__enter__()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["not_a_folder"]


def test_the_next_run_removes_a_new_output_folder_whose_swap_was_killed_at_any_rename(
    tmp_path: Path, monkeypatch
) -> None:
    total = len(NEW_ENTRIES) + 1  # new entries in, the commit point
    for killed_at in range(1, total + 1):
        out = tmp_path / f"run{killed_at}" / "out"
        out.parent.mkdir()
        monkeypatch.setattr(transaction_module.os, "rename", rename_failing_at(killed_at, Killed()))
        monkeypatch.setattr(DatasetTransaction, "_roll_back", lambda *args, **kwargs: None)
        monkeypatch.setattr(DatasetTransaction, "_discard_held", lambda *args, **kwargs: None)
        with pytest.raises(Killed):
            build_new(out)
        monkeypatch.undo()
        assert out.is_dir(), "the killed swap had made the output folder"

        with pytest.raises(RuntimeError), DatasetTransaction(out, replaces_images=True):
            raise RuntimeError("the next run fails too")

        assert list(out.parent.iterdir()) == [], f"killed at rename {killed_at}: no output folder, nothing beside"


KILLED_SWAP = """
import os, sys, time
from pathlib import Path

from vggt_sparse_ns.dataset.transaction import DatasetTransaction, Recovery
from vggt_sparse_ns.interrupts import Interrupted, signals_as_interrupted

out, marker = Path(sys.argv[1]), Path(sys.argv[2])
rename = os.rename

def rename_then_wait(source, target):
    rename(source, target)
    marker.write_text("the swap has made the output folder and moved an entry into it")
    time.sleep(60)

os.rename = rename_then_wait
with DatasetTransaction(out, replaces_images=True) as staging:
    (staging / "transforms.json").write_text("new transforms")
    (staging / "images").mkdir()
"""


def test_after_a_sigkill_in_the_swap_into_a_new_folder_a_failing_next_run_leaves_no_output_folder(
    tmp_path: Path,
) -> None:
    out, marker = tmp_path / "out", tmp_path / "marker"
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen([sys.executable, "-c", KILLED_SWAP, str(out), str(marker)], env=environment)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert marker.exists(), f"the swap did not begin (status {process.poll()})"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert out.is_dir() and len(list(tmp_path.iterdir())) > 2, "killed mid-swap: the output folder and the siblings"

    with pytest.raises(RuntimeError), DatasetTransaction(out, replaces_images=True):
        raise RuntimeError("the next run fails")

    assert sorted(path.name for path in tmp_path.iterdir()) == ["marker"], "no output folder, nothing beside it"


def test_a_second_signal_as_the_cleanup_of_an_interrupted_build_begins_still_removes_the_staging_folder(
    previous: Path, monkeypatch
) -> None:
    before = snapshot(previous)
    discard = DatasetTransaction._discard_held

    def second_signal_then_discard(self) -> None:
        signal.raise_signal(signal.SIGINT)  # a second Ctrl+C before the cleanup holds signals back itself
        discard(self)

    monkeypatch.setattr(DatasetTransaction, "_discard_held", second_signal_then_discard)
    with (
        pytest.raises(Interrupted) as interrupt,
        signals_as_interrupted(),
        DatasetTransaction(previous, replaces_images=True) as staging,
    ):
        write(staging, NEW)
        signal.raise_signal(signal.SIGINT)  # the first Ctrl+C, while the dataset is built
    assert interrupt.value.signal_number == signal.SIGINT
    assert snapshot(previous) == before
    assert sorted(path.name for path in previous.parent.iterdir()) == ["out"], "no staging folder left"
