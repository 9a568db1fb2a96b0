"""One scene's images -> a nerfstudio dataset folder: reconstruct, write images/, export (transforms.json last).

Shared by ``ns-process-data vggt-sparse`` and the ``vggt-sparse`` dataparser. While the model infers, the
images are written into a hidden staging folder (the GPU is busy, the CPUs are free); they are moved into
place only once the reconstruction has succeeded, after a previous transforms.json has been removed. A run
that fails before then leaves the output folder as it was; one that fails while exporting leaves no
transforms.json: never a dataset whose transforms.json disagrees with its images.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vggt_sparse_ns.export.config import ExportConfig
from vggt_sparse_ns.nerfstudio.images import ImageGroup, downscaled_folders, remove_generated, write_images
from vggt_sparse_ns.nerfstudio.report import warn_skipped
from vggt_sparse_ns.pipeline.config import ReconstructionConfig
from vggt_sparse_ns.pipeline.inputs import (
    check_locations,
    generated_folders,
    list_image_files,
    probe_images,
    require_frames,
)
from vggt_sparse_ns.pipeline.stages import StageLog

if TYPE_CHECKING:
    from vggt_sparse_ns.export import ExportSummary
    from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

BESIDE_INFERENCE_WORKERS = max(1, (os.cpu_count() or 1) // 4)
"""Threads that write images while the model infers: few, so that they do not slow the thread that runs the model."""
STAGING_DIR = ".vggt-staging"
"""Inside the output folder: the images written during inference, until the reconstruction has succeeded."""


@dataclass
class DatasetReport:
    """What a run produced, for the final summary."""

    num_frames: int
    attention: dict[str, Any]
    graph_edges: int | None
    export: ExportSummary


def discard_stale_dataset(output_dir: Path) -> None:
    """Remove a previous run's transforms.json before its images are replaced, and its depth maps."""
    from vggt_sparse_ns.export.depth import DEPTH_DIR, DOWNSCALED_DEPTH_PREFIX
    from vggt_sparse_ns.export.nerfstudio import TRANSFORMS_FILE

    (output_dir / TRANSFORMS_FILE).unlink(missing_ok=True)
    remove_generated(output_dir / DEPTH_DIR, DOWNSCALED_DEPTH_PREFIX)


def probe_image_folder(
    folder: Path, output_dir: Path, *, prefix: str, in_place: bool, min_frames: int
) -> tuple[ImageGroup, dict[Path, str]]:
    """The readable images of ``folder`` as one group, after refusing unsafe folder layouts; unreadable files
    are reported as warnings and returned with their reasons. In place, the dataset's derived folders
    (images_N, depth, colmap, vggt) are not read as input."""
    check_locations(folder, output_dir, in_place)
    readable, unreadable = probe_images(
        list_image_files(folder, exclude=generated_folders(output_dir) if in_place else [])
    )
    warn_skipped(unreadable)
    require_frames(readable, unreadable, min_frames, folder)
    return ImageGroup(readable, prefix), unreadable


def _reconstruct_writing_images(
    groups: Sequence[ImageGroup],
    sources: Sequence[Path],
    output_dir: Path,
    reconstruction: ReconstructionConfig,
    num_downscales: int,
    point_head: bool,
    log: StageLog,
) -> tuple[Reconstruction, list[Path]]:
    """Reconstruct ``sources`` (the groups' files) while images/ and images_N are written into the staging folder (from the start of
    inference), then clear the previous dataset and move them into place. When the model or the writing
    fails (or Ctrl+C comes), the writers stop at their next file, the staging folder goes, and the output
    folder too when this run made it. Returns the reconstruction and the images' final paths, in input order."""
    from vggt_sparse_ns.pipeline.run import reconstruct

    made_output_dir = not output_dir.exists()
    staging = output_dir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    staged: list[Path] = []
    stop = threading.Event()

    def write_staged_images() -> None:
        with log.stage_beside("write images", running="inference"):
            written = write_images(
                groups, staging / "images", num_downscales, workers=BESIDE_INFERENCE_WORKERS, stop=stop
            )
            staged.extend(path for group in written for path in group)

    with ThreadPoolExecutor(max_workers=1) as writer:
        writing: list[Future[None]] = []
        try:
            result = reconstruct(
                sources,
                reconstruction,
                log,
                point_head=point_head,
                on_inference_start=lambda: writing.append(writer.submit(write_staged_images)),
            )
            with log.stage("finish writing images"):
                for pending in writing:
                    pending.result()
        except BaseException:
            stop.set()
            writer.shutdown(wait=True)
            shutil.rmtree(staging, ignore_errors=True)
            if made_output_dir and output_dir.is_dir() and not any(output_dir.iterdir()):
                output_dir.rmdir()
            raise
    image_dir = output_dir / "images"
    with log.stage("clear old outputs"):
        discard_stale_dataset(output_dir)
        remove_generated(image_dir, f"{image_dir.name}_")
    with log.stage("move images into place"):
        for folder in [image_dir, *downscaled_folders(image_dir, num_downscales)]:
            (staging / folder.name).rename(folder)
        staging.rmdir()
    return result, [image_dir / path.name for path in staged]


def _relative_names(paths: Sequence[Path], output_dir: Path) -> list[str]:
    return [Path(os.path.relpath(os.path.abspath(path), os.path.abspath(output_dir))).as_posix() for path in paths]


def build_dataset(
    groups: Sequence[ImageGroup],
    output_dir: Path,
    reconstruction: ReconstructionConfig,
    export: ExportConfig,
    *,
    copy_images: bool,
    num_downscales: int,
    log: StageLog,
) -> DatasetReport:
    """Reconstruct the groups' images as one scene and write the dataset into ``output_dir``.

    copy_images: write images/ and ``num_downscales`` downscaled folders from the inputs; otherwise the images
    are already inside ``output_dir`` and ``num_downscales`` must be the number of images_N folders there
    (``present_downscales``): depth maps get as many. A point cloud from the point map
    (``export.point_source="points"``) runs the point head.
    """
    from vggt_sparse_ns.export import export_dataset
    from vggt_sparse_ns.pipeline.run import reconstruct, resolve_device

    sources = [probe.path for group in groups for probe in group.probes]
    point_head = export.point_source == "points"
    if copy_images:
        result, written = _reconstruct_writing_images(
            groups, sources, output_dir, reconstruction, num_downscales, point_head, log
        )
        names = _relative_names(written, output_dir)
    else:
        result = reconstruct(sources, reconstruction, log, point_head=point_head)
        output_dir.mkdir(parents=True, exist_ok=True)
        with log.stage("clear old outputs"):
            discard_stale_dataset(output_dir)
        names = _relative_names(sources, output_dir)
    run_summary = {
        "reconstruction": dataclasses.asdict(reconstruction),
        "seconds": dict(log.seconds),
        "seconds_beside": {
            name: {"during": running, "seconds": seconds} for name, (running, seconds) in log.beside.items()
        },
        "peak_memory_bytes": log.peak_memory_bytes,
        **({"ranks": log.ranks} if log.ranks else {}),
    }
    summary = export_dataset(
        result,
        output_dir,
        names,
        export,
        num_downscales=num_downscales,
        run_summary=run_summary,
        log=log,
        device=resolve_device(reconstruction.device),
    )
    edges = None if result.graph_edges is None else len(result.graph_edges)
    return DatasetReport(result.num_frames, dict(result.attention), edges, summary)
