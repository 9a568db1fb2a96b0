"""One scene's images -> a nerfstudio dataset folder: reconstruct, write images/, export, record the run.

The one builder behind ``ns-process-data vggt-sparse`` and the ``vggt-sparse`` dataparser. It writes into a
folder of its own, a ``DatasetTransaction``'s staging folder, which is swapped into place only once the whole
dataset is there; while the model infers, the images are already being written (the GPU is busy, the CPUs
are free).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vggt_sparse_ns.dataset.images import ImageGroup, write_images
from vggt_sparse_ns.dataset.inputs import check_locations, list_image_files, probe_images, require_frames
from vggt_sparse_ns.export.config import ExportConfig
from vggt_sparse_ns.interrupts import held_signals
from vggt_sparse_ns.output_layout import derived_folders
from vggt_sparse_ns.pipeline.config import ReconstructionConfig
from vggt_sparse_ns.refine.config import RefineConfig
from vggt_sparse_ns.timing import StageTimer

if TYPE_CHECKING:
    from vggt_sparse_ns.export import ExportSummary
    from vggt_sparse_ns.images import ImageProblem
    from vggt_sparse_ns.pipeline.reconstruction import Reconstruction

BESIDE_INFERENCE_WORKERS = max(1, (os.cpu_count() or 1) // 4)
"""Threads that write images while the model infers: few, so that they do not slow the thread that runs the model."""


@dataclass
class DatasetReport:
    """What a run produced, for the final summary."""

    num_frames: int
    attention: dict[str, Any]
    graph_edges: int | None
    export: ExportSummary
    refinement: dict[str, Any] | None = None
    """refine()'s figures, when the run refined its cameras (--refine)."""


def probe_image_folder(
    folder: Path, output_dir: Path, *, prefix: str, in_place: bool, min_frames: int
) -> tuple[ImageGroup, dict[Path, ImageProblem]]:
    """The usable images of ``folder`` as one group, after refusing unsafe folder layouts, and the skipped files
    with their problems (for the caller to report). In place, the dataset's derived folders (images_N, depth,
    colmap, vggt) are not read as input."""
    check_locations(folder, output_dir, in_place)
    usable, skipped = probe_images(list_image_files(folder, exclude=derived_folders(output_dir) if in_place else []))
    require_frames(usable, skipped, min_frames, folder)
    return ImageGroup(usable, prefix), skipped


def _reconstruct_writing_images(
    groups: Sequence[ImageGroup],
    sources: Sequence[Path],
    dataset_dir: Path,
    reconstruction: ReconstructionConfig,
    num_downscales: int,
    point_head: bool,
    log: StageTimer,
    across_processes: bool,
) -> tuple[Reconstruction, list[Path]]:
    """Reconstruct ``sources`` (the groups' files) while images/ and images_N are written into ``dataset_dir``
    from the start of inference. When the model or the writing fails (or Ctrl+C comes), the writers stop at
    their next file and are waited for, so that nothing writes into ``dataset_dir`` any more. Returns the
    reconstruction and the images' paths, in input order."""
    from vggt_sparse_ns.pipeline.run import reconstruct

    staged: list[Path] = []
    stop = threading.Event()

    def write_staged_images() -> None:
        with log.beside("write images", running="inference"):
            written = write_images(groups, dataset_dir, num_downscales, workers=BESIDE_INFERENCE_WORKERS, stop=stop)
            staged.extend(path for group in written for path in group)

    writer = ThreadPoolExecutor(max_workers=1)
    writing: list[Future[None]] = []
    try:
        result = reconstruct(
            sources,
            reconstruction,
            log,
            point_head=point_head,
            on_inference_start=lambda: writing.append(writer.submit(write_staged_images)),
            across_processes=across_processes,
        )
        with log.stage("finish writing images"):
            for pending in writing:
                pending.result()
    except BaseException:
        stop.set()  # first: the writers begin no further file
        with held_signals():  # a second Ctrl+C must not leave a writer running
            writer.shutdown(wait=True)
        raise
    writer.shutdown()
    return result, staged


def _relative_names(paths: Sequence[Path], root: Path) -> list[str]:
    return [Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix() for path in paths]


def build_dataset(
    groups: Sequence[ImageGroup],
    dataset_dir: Path,
    reconstruction: ReconstructionConfig,
    export: ExportConfig,
    *,
    copy_images: bool,
    num_downscales: int,
    log: StageTimer,
    image_root: Path | None = None,
    refinement: RefineConfig | None = None,
    across_processes: bool = False,
) -> DatasetReport:
    """Reconstruct the groups' images as one scene and write the whole dataset into ``dataset_dir``.

    Args:
        groups: The images, with their name prefixes (frame_, or frame_train_ and frame_eval_).
        dataset_dir: An empty folder: a ``DatasetTransaction``'s staging folder.
        reconstruction: The model's settings.
        export: What to write besides transforms.json and the point cloud (depth maps, COLMAP model); a point
            cloud from the point map (``point_source="points"``) runs the point head.
        copy_images: Write images/ and ``num_downscales`` downscaled folders from the inputs. Otherwise the
            images are already in place under ``image_root`` and ``num_downscales`` is the number of images_N
            folders there (``output_layout.present_downscales``): depth maps get as many.
        num_downscales: Downscaled image folders (images_2, images_4, ...).
        log: Times every stage; its seconds go into vggt/summary.json.
        image_root: Where the images in place are found and named from (default ``dataset_dir``): the final
            output folder when the images are used in place.
        refinement: With ``refine`` set, the cameras are refined against the images after inference
            (vggt_sparse_ns.refine), before anything is exported.
        across_processes: This is rank 0 of a command on several processes (distributed/launch.py): they
            share the reconstruction; rank 0 alone writes, here.

    Returns:
        What was made, for the final summary.
    """
    from vggt_sparse_ns.export import export_dataset
    from vggt_sparse_ns.export.run_info import write_run_summary
    from vggt_sparse_ns.pipeline.run import reconstruct, resolve_device

    sources = [probe.path for group in groups for probe in group.probes]
    point_head = export.point_source == "points"
    image_root = image_root or dataset_dir
    if copy_images:
        result, written = _reconstruct_writing_images(
            groups, sources, dataset_dir, reconstruction, num_downscales, point_head, log, across_processes
        )
        image_root = dataset_dir
        names = _relative_names(written, dataset_dir)
    else:
        result = reconstruct(sources, reconstruction, log, point_head=point_head, across_processes=across_processes)
        names = _relative_names(sources, image_root)
    if refinement is not None and refinement.refine:
        from vggt_sparse_ns.refine import refine

        with log.stage("refine"):
            result = refine(result, refinement)
    summary = export_dataset(
        result,
        dataset_dir,
        names,
        export,
        num_downscales=num_downscales,
        image_root=image_root,
        log=log,
        device=resolve_device(reconstruction.device),
    )
    write_run_summary(
        dataset_dir,
        {
            "reconstruction": dataclasses.asdict(reconstruction),
            "seconds": log.seconds(),
            "seconds_beside": {
                name: {"during": running, "seconds": seconds}
                for name, (running, seconds) in log.seconds_beside().items()
            },
            "peak_memory_bytes": log.peak_memory_bytes,
            **({"ranks": log.ranks} if log.ranks else {}),
            "attention": result.attention,
            **({"refinement": result.refinement} if result.refinement else {}),
            "export": summary.to_json(),
        },
    )
    edges = None if result.graph_edges is None else len(result.graph_edges)
    return DatasetReport(result.num_frames, dict(result.attention), edges, summary, result.refinement or None)
