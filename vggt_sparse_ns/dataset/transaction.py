"""One transaction per run: a new dataset is built in a staging folder beside the output and swapped in whole,
or not at all.

While a run works, the output folder is not touched: everything goes into the hidden sibling
``.<output>.vggt-staging`` (same file system, so moving an entry is a rename). On success the swap moves the
old dataset's entries (``output_layout.dataset_entries``: only what a dataset consists of, never the user's own
files; the image folders only when the run writes its own) into the hidden sibling ``.<output>.vggt-trash``,
then the new entries in, then deletes the trash. The swap's last step, renaming the trash to
``.<output>.vggt-trash-done``, is its commit point. Ctrl+C and SIGTERM are held back during the swap: one
that arrives rolls it back (as does any error), so the old dataset stays byte for byte as it was, then it is
raised. Whatever fails or is interrupted before the commit point leaves the output folder as it was and
nothing beside it. A run that was killed outright (SIGKILL, power loss) can leave the hidden siblings: the
next run on the same output folder rolls its swap back (or finishes deleting its trash) and removes them first,
and with them an output folder that the killed swap made (so an output folder that did not exist before a run
does not exist after it unless that run succeeds).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import shutil
from pathlib import Path
from types import TracebackType

from vggt_sparse_ns.interrupts import held_signals, stop_if_signalled
from vggt_sparse_ns.output_layout import dataset_entries
from vggt_sparse_ns.pipeline.errors import InputError
from vggt_sparse_ns.timing import StageTimer, stage_of

SWAP_STAGE = "move into place"
SWAP_MANIFEST = ".vggt-swap.json"
"""Inside the trash folder: the old and new entry names of the swap, and whether it made the output folder, so
that a killed swap can be rolled back."""


class Recovery(enum.Enum):
    """What ``DatasetTransaction.recover`` found beside the output folder of a run that was killed."""

    NOTHING_LEFT = "nothing"
    """The run had not begun its dataset, or had finished it: nothing to undo."""
    ROLLED_BACK = "rolled back"
    """A staging folder, or a swap before its commit point: removed, rolled back; the previous dataset is there."""
    COMPLETED = "completed"
    """A swap past its commit point: its trash deleted; the new dataset is there, complete."""


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class DatasetTransaction:
    """Build a dataset in ``staging`` and swap it into ``output_dir`` on success (see the module's docstring).

    Args:
        output_dir: The dataset folder; made at the swap when it does not exist.
        replaces_images: Whether the new dataset brings its own images/ and images_N (copied or extracted);
            without it (images used in place) the image folders in ``output_dir`` are left where they are.
        timer: Times the swap as the stage "move into place" (it comes after vggt/summary.json is written,
            so only the console's summary shows it).

    Example:
        >>> with DatasetTransaction(Path("out"), replaces_images=True) as staging:  # doctest: +SKIP
        ...     (staging / "transforms.json").write_text("{}")
    """

    def __init__(self, output_dir: Path, *, replaces_images: bool, timer: StageTimer | None = None) -> None:
        self.output_dir = Path(os.path.realpath(output_dir))  # a symlinked folder: beside its target (same disk)
        self.replaces_images = replaces_images
        hidden = f".{self.output_dir.name}.vggt"
        self.staging = self.output_dir.with_name(f"{hidden}-staging")
        self.trash = self.output_dir.with_name(f"{hidden}-trash")
        self.committed_trash = self.output_dir.with_name(f"{hidden}-trash-done")
        self.committed = False
        self._stage = stage_of(timer)
        self._made_folders: list[Path] = []

    def __enter__(self) -> Path:
        try:
            with held_signals():
                ancestors = [self.output_dir.parent, *self.output_dir.parent.parents]
                self._made_folders = [folder for folder in ancestors if not folder.exists()]
                self.output_dir.parent.mkdir(parents=True, exist_ok=True)
                self.recover()
                self.staging.mkdir()
        except OSError as error:
            self._discard_held()
            raise InputError(
                f"Cannot prepare {self.staging} beside the output folder {self.output_dir} (a new dataset is built "
                f"there and moved into place when complete): {error}. Choose an output folder in a writable folder."
            ) from error
        except BaseException:  # including a signal held back above, delivered as the block ends
            self._discard_held()
            raise
        return self.staging

    def __exit__(
        self, error_type: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error_type is not None:
            self._discard_held()
            return
        try:
            with self._stage(SWAP_STAGE):
                self._swap()
        except BaseException:  # the swap rolled itself back; a signal may also have come just before it began
            self._discard_held()
            raise

    def recover(self) -> Recovery:
        """Undo what a killed run left beside the output folder: roll back an uncommitted swap, finish
        deleting a committed swap's trash, remove a staging folder. Returns what it found, which says what the
        output folder holds (a committed swap removes its staging folder before its trash, so a staging folder
        without a committed trash is an unfinished run's)."""
        found = Recovery.NOTHING_LEFT
        if self.committed_trash.exists():
            shutil.rmtree(self.committed_trash)
            found = Recovery.COMPLETED
        elif self.trash.exists() or self.staging.exists():
            found = Recovery.ROLLED_BACK
        if self.trash.exists():
            manifest = self.trash / SWAP_MANIFEST
            names = json.loads(manifest.read_text()) if manifest.exists() else {"old": [], "new": []}
            self._roll_back(
                moved_new=names["new"], moved_old=names["old"], made_output_dir=names.get("made_output_dir", False)
            )
        if self.staging.exists():
            shutil.rmtree(self.staging)
        return found

    def _roll_back(self, moved_new: list[str], moved_old: list[str], made_output_dir: bool) -> None:
        """Put the old entries back where they were (removing a new entry of the same name), delete the staging
        and trash folders, and the output folder when the swap made it (it did not exist before the run)."""
        for name in moved_new:
            if (self.staging / name).exists() or (self.staging / name).is_symlink():
                continue  # never moved out of the staging folder
            if name not in moved_old or (self.trash / name).exists():
                _remove(self.output_dir / name)
        for name in moved_old:
            if (self.trash / name).exists() or (self.trash / name).is_symlink():
                os.rename(self.trash / name, self.output_dir / name)
        shutil.rmtree(self.trash, ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        if made_output_dir:
            _remove_if_empty(self.output_dir)

    def _swap(self) -> None:
        with held_signals() as arrived:
            made_output_dir = not self.output_dir.exists()
            old = dataset_entries(self.output_dir, with_images=self.replaces_images)
            new = sorted(os.listdir(self.staging))
            moved_old: list[str] = []
            moved_new: list[str] = []
            try:
                self.trash.mkdir()
                _write_manifest(
                    self.trash / SWAP_MANIFEST, {"old": old, "new": new, "made_output_dir": made_output_dir}
                )
                self.output_dir.mkdir(exist_ok=True)  # after the manifest, which says whether a rollback removes it
                for name in old:
                    stop_if_signalled(arrived)
                    os.rename(self.output_dir / name, self.trash / name)
                    moved_old.append(name)
                for name in new:
                    stop_if_signalled(arrived)
                    os.rename(self.staging / name, self.output_dir / name)
                    moved_new.append(name)
                stop_if_signalled(arrived)
                os.rename(self.trash, self.committed_trash)
            except BaseException:
                self._roll_back(moved_new=moved_new, moved_old=moved_old, made_output_dir=made_output_dir)
                self._remove_made_folders()
                raise
            self.committed = True
            self.staging.rmdir()  # before the trash: a staging folder beside the output means "not committed"
            shutil.rmtree(self.committed_trash)

    def _discard_held(self) -> None:
        """Remove the staging folder (and the parents this run made), Ctrl+C and SIGTERM held back meanwhile."""
        with held_signals():
            shutil.rmtree(self.staging, ignore_errors=True)
            self._remove_made_folders()

    def _remove_made_folders(self) -> None:
        """The output folder's parents this run made, when they are still empty."""
        for folder in self._made_folders:
            _remove_if_empty(folder)


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def _write_manifest(path: Path, names: dict[str, list[str] | bool]) -> None:
    """Whole or not at all: a swap killed while writing it leaves no manifest (and has moved nothing)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(names))
    os.replace(temporary, path)
