"""Choosing the input images: listing a folder, probing each file, and refusing layouts that cannot work.

Unreadable files, and images too large, too small or too narrow to use (``vggt_sparse_ns.images``:
MAX_IMAGE_PIXELS, ``size_problem``), are skipped with their ``ImageProblem`` (the run continues while at least
two usable images remain), the way COLMAP skips unreadable ones in ``ns-process-data images``; this module words
the warnings and counts (``skip_warning``, ``skipped_count``). Probing decodes JPEGs at 1/8
scale, which reads the whole file (so truncation is caught) at a fraction of a full decode's cost.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from vggt_sparse_ns.images import (
    PROBLEM_KINDS,
    ROTATED_ORIENTATIONS,
    ImageLoadError,
    ImageProblem,
    decoding_slot,
    exif_orientation,
    open_image,
    pixel_mode,
    size_problem,
)
from vggt_sparse_ns.output_layout import IMAGES_DIR, derived_folders
from vggt_sparse_ns.pipeline.errors import InputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
NERFSTUDIO_MODES = ("RGB", "RGBA", "L")
"""Pixel modes nerfstudio's image loader reads as they are (it ignores EXIF orientation and bit depth)."""
NERFSTUDIO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
"""Extensions nerfstudio's process_data_utils.list_images accepts (the files ``ns-process-data images`` keeps);
images of other formats are written as PNGs."""


@dataclass(frozen=True)
class ImageProbe:
    """What the dataset writer needs to know about one readable image file."""

    path: Path
    size: tuple[int, int]
    """(width, height) after EXIF orientation, as VGGT sees the image."""
    mode: str
    """PIL's mode; "RGB;16" and "RGBA;16" for 16 bits per channel (``images.pixel_mode``)."""
    orientation: int
    """EXIF orientation tag (1 when absent)."""

    @property
    def readable_by_nerfstudio(self) -> bool:
        """nerfstudio's loader would see the same pixels as VGGT: upright, 8-bit RGB/RGBA/gray, a known extension."""
        return (
            self.orientation == 1
            and self.mode in NERFSTUDIO_MODES
            and self.path.suffix.lower() in NERFSTUDIO_EXTENSIONS
        )


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def check_video(path: Path) -> None:
    """Refuse a video ffmpeg cannot read, before anything is made: ffprobe reads its header and decodes its first
    frame (a fraction of a second), so that a corrupt file, or one without a video stream, is one InputError
    naming it instead of the error box of nerfstudio's frame extraction."""
    first_frame = ["-select_streams", "v:0", "-read_intervals", "%+#1", "-show_entries", "frame=width"]
    command = ["ffprobe", "-v", "error", *first_frame, "-of", "csv=p=0", str(path)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode == 0 and result.stdout.strip():
        return
    said = result.stderr.strip().splitlines()
    reason = said[-1].removeprefix(f"{path}: ") if said else "it holds no video frame that ffmpeg can decode"
    raise InputError(f"ffmpeg could not read the video {path}: {reason}")


def list_image_files(folder: Path, exclude: Iterable[Path] = ()) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden names skipped), outside the ``exclude`` folders."""
    if not folder.exists():
        raise InputError(f"--data {folder} does not exist.")
    if not folder.is_dir():
        raise InputError(
            f"--data {folder} is neither a folder of images nor a video file ({', '.join(VIDEO_EXTENSIONS)})."
        )
    excluded = [Path(os.path.abspath(path)) for path in exclude]
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if not path.is_file() or any(Path(os.path.abspath(path)).is_relative_to(root) for root in excluded):
            continue
        files.append(path)
    if not files:
        raise InputError(f"No images in {folder}: expected files ending in {', '.join(IMAGE_EXTENSIONS)}.")
    return files


def probe_image(path: Path) -> ImageProbe:
    """Decode ``path`` (JPEGs at reduced scale) and read its size, mode and EXIF orientation; ImageLoadError
    (with its ``problem``) when it cannot be read or its size makes no input."""
    try:
        with open_image(path) as image, decoding_slot(image):
            width, height = image.size
            problem = size_problem(image.size)
            if problem is not None:
                raise ImageLoadError.about(path, problem)
            mode = pixel_mode(image)
            orientation = exif_orientation(image)
            image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except ImageLoadError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError.unreadable(path, error) from error
    if orientation in ROTATED_ORIENTATIONS:
        width, height = height, width
    return ImageProbe(path, (width, height), mode, orientation)


def _probe_or_problem(path: Path) -> ImageProbe | ImageProblem:
    try:
        return probe_image(path)
    except ImageLoadError as error:
        return error.problem or ImageProblem("unreadable", str(error))


def probe_images(
    paths: Sequence[Path], workers: int | None = None
) -> tuple[list[ImageProbe], dict[Path, ImageProblem]]:
    """Probe every file in parallel; returns the usable ones (in order) and the skipped ones with their problem."""
    workers = workers or min(16, (os.cpu_count() or 1) * 2, max(1, len(paths)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_probe_or_problem, paths))
    usable = [result for result in results if isinstance(result, ImageProbe)]
    skipped = {path: result for path, result in zip(paths, results, strict=True) if isinstance(result, ImageProblem)}
    return usable, skipped


def skip_warning(path: Path, problem: ImageProblem) -> str:
    """The warning for one skipped file: "skipping image PATH: too small: 12x900 pixels, a side needs at least 16"."""
    return f"skipping image {path}: {problem}"


def skipped_count(skipped: Mapping[Path, ImageProblem]) -> str:
    """The skipped files counted by kind: "3 images skipped: 2 unreadable, 1 too small"."""
    kinds = Counter(problem.kind for problem in skipped.values())
    counts = ", ".join(f"{kinds[kind]} {kind}" for kind in PROBLEM_KINDS if kinds[kind])
    return f"{len(skipped)} image{'' if len(skipped) == 1 else 's'} skipped: {counts}"


def require_frames(
    usable: Sequence[ImageProbe], skipped: Mapping[Path, ImageProblem], minimum: int, source: Path
) -> None:
    """Stop with one message when fewer than ``minimum`` usable images remain."""
    if len(usable) >= minimum:
        return
    example = next(iter(skipped.items()), None)
    because = f" ({skipped_count(skipped)}, e.g. {example[0]}: {example[1]})" if example else ""
    raise InputError(
        f"{source} holds {len(usable)} usable image(s){because}; a dataset needs at least {minimum} views of the scene."
    )


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(folder)))


def check_locations(data: Path, output_dir: Path, in_place: bool) -> None:
    """Refuse folder layouts that cannot give a clean dataset.

    Copying (the default): the output folder must not lie inside the input folder (the copies in images/
    would be read as input by the next run), and the input must not lie inside the image folders that are
    cleared and rewritten (images/ and every derived folder, such as images_N). In place (--skip-image-processing): the images must lie inside the output folder,
    since transforms.json names them relative to it, as nerfstudio's datasets do.
    """
    if in_place:
        if not _inside(data, output_dir):
            raise InputError(
                f"--skip-image-processing uses the images where they are, so --data {data} must be inside "
                f"--output-dir {output_dir} (for example --data out/images --output-dir out)."
            )
        return
    if _inside(output_dir, data):
        raise InputError(
            f"--output-dir {output_dir} is inside --data {data}: the images copied into it would be read as input "
            "by the next run. Choose an output folder outside the input folder (or pass --skip-image-processing "
            "to use images already inside the output folder)."
        )
    rewritten = [output_dir / IMAGES_DIR, *derived_folders(output_dir)]
    for folder in rewritten:
        if _inside(data, folder):
            raise InputError(
                f"--data {data} is inside {folder}, which this command clears and rewrites. Move the input "
                "images elsewhere, or pass --skip-image-processing to use them in place."
            )
