"""``ns-process-data vggt-sparse`` (and ``ns-process-data-vggt``): images or a video -> a nerfstudio dataset,
with VGGT in place of COLMAP. Module import stays light: nerfstudio's CLI imports it to build its help."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import tyro
from nerfstudio.process_data.base_converter_to_nerfstudio_dataset import BaseConverterToNerfstudioDataset

from vggt_sparse_ns.cli_errors import report_error, reported
from vggt_sparse_ns.dataset import (
    DatasetReport,
    DatasetTransaction,
    ImageGroup,
    Recovery,
    build_dataset,
    probe_image_folder,
)
from vggt_sparse_ns.dataset.inputs import ImageProbe, check_video, is_video, probe_image
from vggt_sparse_ns.distributed.launch import GpuChoice
from vggt_sparse_ns.export.config import ExportConfig
from vggt_sparse_ns.images import ImageProblem
from vggt_sparse_ns.nerfstudio import report
from vggt_sparse_ns.output_layout import IMAGES_DIR, present_downscales
from vggt_sparse_ns.pipeline.config import MIN_FRAMES, ReconstructionConfig
from vggt_sparse_ns.pipeline.errors import InputError
from vggt_sparse_ns.refine.config import RefineConfig
from vggt_sparse_ns.timing import StageTimer


@dataclass
class ProcessVGGTSparse(BaseConverterToNerfstudioDataset):
    """Process images or a video into a nerfstudio dataset with VGGT instead of COLMAP.

    1. Reconstructs cameras, depth and points of all images in one VGGT pass (sparse global attention for
       many frames).
    2. Copies and downscales the images like `ns-process-data images`.
    3. With --refine, refines the cameras against the images (SIFT matches on the frame graph, triangulation,
       bundle adjustment); frames without enough matches keep VGGT's camera.
    4. Writes transforms.json (last), sparse_pc.ply and optionally depth maps and a COLMAP model.

    The new dataset is built beside the output folder and swapped in only when complete: a run that fails or
    is interrupted leaves the previous dataset as it was. Exits with status 1 and one error message when the
    input cannot make a dataset, 130 on Ctrl+C, 143 on SIGTERM.
    """

    num_downscales: int = 3
    """Number of times to downscale the images. Downscales by 2 each time. For example a value of 3 will downscale
    the images by 2x, 4x, and 8x. With --skip-image-processing the images_N folders already in the output
    folder count instead."""
    skip_image_processing: bool = False
    """If True, uses the images where they are (transforms.json refers to them) instead of copying and
    downscaling them into the output folder."""
    num_frames_target: int = 300
    """For a video: target number of frames to extract, results may not be exact."""
    reconstruction: Annotated[ReconstructionConfig, tyro.conf.OmitArgPrefixes] = ReconstructionConfig()
    export: Annotated[ExportConfig, tyro.conf.OmitArgPrefixes] = ExportConfig()
    refinement: Annotated[RefineConfig, tyro.conf.OmitArgPrefixes] = RefineConfig()
    gpus: GpuChoice = 1
    """GPUs that share the frames of one exact reconstruction, one process each (all: every visible GPU); with
    --device cpu, that many CPU processes. torchrun starts the processes itself instead, on one host or several:
    torchrun --nproc-per-node N $(which ns-process-data-vggt) ..."""
    view: bool = False
    """Open the result in the browser viewer when done (serves until Ctrl+C)."""

    def __post_init__(self) -> None:
        """Create nothing yet: the inputs are checked before any folder is made."""

    def main(self, timer: StageTimer | None = None) -> None:
        """Run the command; ``timer`` (a new one by default) receives every stage's seconds, for callers that
        keep them (benchmarks/process_data.py). With several processes (--gpus, torchrun) rank 0 runs it and the
        others run their share of the model (distributed/launch.py): they write nothing, and an error on any of
        them stops all with one message."""
        from vggt_sparse_ns.distributed.launch import requested_processes, run_command, torchrun_processes

        with reported(verbose=self.verbose):
            processes = requested_processes(self.gpus, self.reconstruction.device)
        if processes > 1 or torchrun_processes() > 1:
            fail = partial(report_error, verbose=self.verbose)
            main = partial(self._run, timer, across_processes=True)
            run_command(main, processes, self.reconstruction.device, fail, recover_output=self._recover_output)
        else:
            self._run(timer)

    def _run(self, timer: StageTimer | None, across_processes: bool = False) -> None:
        """The command; ``across_processes``: as rank 0 of several processes (the others follow it)."""
        timer = timer or StageTimer()
        transaction = DatasetTransaction(self.output_dir, replaces_images=not self.skip_image_processing, timer=timer)

        def after_interrupt() -> str:
            return _holds(self.output_dir, Recovery.COMPLETED if transaction.committed else Recovery.ROLLED_BACK)

        with reported(verbose=self.verbose, after_interrupt=after_interrupt):
            with report.StageSpinner() as spinner:
                timer.on_start = spinner
                result, skipped = self._process(transaction, timer, across_processes)
            report.print_summary(self.output_dir, result, skipped, timer)
            if self.view:
                self._serve()

    def _recover_output(self) -> str:
        """Run by the launcher when rank 0, which owns the run's dataset transaction, was killed before it could
        end it: what it left beside the output folder is undone (as the next run would); returns what the output
        folder holds."""
        transaction = DatasetTransaction(self.output_dir, replaces_images=not self.skip_image_processing)
        return _holds(self.output_dir, transaction.recover())

    def _process(
        self, transaction: DatasetTransaction, timer: StageTimer, across_processes: bool
    ) -> tuple[DatasetReport, dict[Path, ImageProblem]]:
        kinds = {is_video(source) for source, _ in self._sources()}
        if len(kinds) > 1:
            raise InputError(
                f"--data {self.data} and --eval-data {self.eval_data} must both be image folders or both videos."
            )
        if self.refinement.refine:
            self.refinement.device()  # an unavailable --refine-device fails now, not after inference
        video = is_video(self.data)
        if video and (shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None):
            raise InputError(
                "ffmpeg was not found: nerfstudio uses it (and its ffprobe) to extract and downscale a video's "
                "frames. Install it (apt install ffmpeg, brew install ffmpeg or conda install ffmpeg), or extract "
                "the frames into a folder and pass that folder as --data."
            )
        if video and self.skip_image_processing:
            raise InputError("--skip-image-processing applies to image folders; a video's frames must be extracted.")
        skipped: dict[Path, ImageProblem] = {}
        if video:
            with timer.stage("probe video"):
                for source, _ in self._sources():
                    check_video(source)
        else:
            with timer.stage("probe images"):
                groups, skipped = self._probe_folders()
            report.warn_skipped(skipped)
        with transaction as staging:
            if video:
                with timer.stage(report.EXTRACT_FRAMES_STAGE):
                    groups = self._extract_video_frames(staging)
            in_place = self.skip_image_processing
            result = build_dataset(
                groups,
                staging,
                self.reconstruction,
                self.export,
                copy_images=not video and not in_place,
                num_downscales=present_downscales(self.output_dir) if in_place else self.num_downscales,
                log=timer,
                image_root=self.output_dir if in_place else staging,
                refinement=self.refinement,
                across_processes=across_processes,
            )
        return result, skipped

    def _sources(self) -> list[tuple[Path, str]]:
        """(input, image-name prefix) pairs, nerfstudio's naming: frame_ or frame_train_ and frame_eval_."""
        if self.eval_data is None:
            return [(self.data, "frame_")]
        return [(self.data, "frame_train_"), (self.eval_data, "frame_eval_")]

    def _probe_folders(self) -> tuple[list[ImageGroup], dict[Path, ImageProblem]]:
        groups, skipped = [], {}
        for folder, prefix in self._sources():
            group, skipped_here = probe_image_folder(
                folder,
                self.output_dir,
                prefix=prefix,
                in_place=self.skip_image_processing,
                min_frames=1 if prefix == "frame_eval_" else MIN_FRAMES,
            )
            groups.append(group)
            skipped.update(skipped_here)
        if self.skip_image_processing:
            _require_readable_in_place([probe for group in groups for probe in group.probes])
        return groups, skipped

    def _extract_video_frames(self, dataset_dir: Path) -> list[ImageGroup]:
        """The video's frames (and their downscales, made by nerfstudio's extractor) in ``dataset_dir``."""
        from nerfstudio.process_data import process_data_utils

        image_dir = dataset_dir / IMAGES_DIR
        groups = []
        for index, (video, prefix) in enumerate(self._sources()):
            try:
                process_data_utils.convert_video_to_images(
                    video,
                    image_dir=image_dir,
                    num_frames_target=self.num_frames_target,
                    num_downscales=self.num_downscales,
                    verbose=self.verbose,
                    image_prefix=prefix,
                    keep_image_dir=index > 0,
                )
            except SystemExit:  # nerfstudio's extraction failed after printing ffmpeg's own message
                raise InputError(f"ffmpeg could not extract the frames of {video} (its message is above).") from None
            frames = sorted(image_dir.glob(f"{prefix}[0-9]*.png"))
            groups.append(ImageGroup([probe_image(frame) for frame in frames], prefix))
        total = sum(len(group.probes) for group in groups)
        if total < MIN_FRAMES:
            raise InputError(f"{self.data} gave {total} frame(s); a dataset needs at least {MIN_FRAMES}.")
        return groups

    def _serve(self) -> None:
        from vggt_sparse_ns.viewer import ViewerConfig, serve_reconstruction

        serve_reconstruction(self.output_dir, ViewerConfig(), block=True)


def _holds(output_dir: Path, found: Recovery) -> str:
    """What ``output_dir`` holds after a run that did not finish, for its one line."""
    if found is Recovery.COMPLETED:
        return f"The new dataset in {output_dir} is complete."
    if found is Recovery.ROLLED_BACK:
        return f"{output_dir} was left as it was."
    return f"Nothing unfinished was left in or beside {output_dir}."


def _require_readable_in_place(probes: list[ImageProbe]) -> None:
    """With --skip-image-processing nerfstudio reads the inputs as they are; refuse files it would misread."""
    misread = [probe for probe in probes if not probe.readable_by_nerfstudio]
    if misread:
        example = misread[0]
        raise InputError(
            f"--skip-image-processing uses the images in place, but nerfstudio's loader would read {len(misread)} "
            f"of them differently from VGGT (EXIF rotation, 16-bit/palette/CMYK pixels or an unsupported format), "
            f"e.g. {example.path} (mode {example.mode}, EXIF orientation {example.orientation}). Run without "
            "--skip-image-processing so they are converted."
        )
