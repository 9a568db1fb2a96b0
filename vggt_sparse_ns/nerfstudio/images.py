"""Writing images/ and images_2/4/8 with nerfstudio's own process_data utilities.

The pixels nerfstudio's loader reads must be the pixels VGGT saw: that loader ignores EXIF orientation
and reads 16-bit, palette or CMYK files wrongly, so such files are written upright as 8-bit PNGs first.
When every file can be copied as it is, with one extension and one size, nerfstudio's fast path runs
(a file copy and one ffmpeg call per folder), exactly as in ``ns-process-data images``; otherwise each
file is placed by us and nerfstudio's per-file ffmpeg downscaling makes images_2/4/8.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vggt_sparse_ns.pipeline.inputs import ImageProbe


@dataclass(frozen=True)
class ImageGroup:
    """Images written under one name prefix (nerfstudio: ``frame_`` or ``frame_train_``/``frame_eval_``)."""

    probes: Sequence[ImageProbe]
    prefix: str


def _can_use_fast_path(groups: Sequence[ImageGroup]) -> bool:
    probes = [probe for group in groups for probe in group.probes]
    return (
        all(probe.readable_by_nerfstudio for probe in probes)
        and len({probe.path.suffix for probe in probes}) == 1
        and len({probe.size for probe in probes}) == 1
    )


def _target_name(probe: ImageProbe, prefix: str, index: int) -> str:
    suffix = probe.path.suffix if probe.readable_by_nerfstudio else ".png"
    return f"{prefix}{index:05d}{suffix}"


def remove_generated(folder: Path, downscaled_prefix: str) -> None:
    """Remove ``folder`` and every downscaled sibling ``<downscaled_prefix>N``, however many an earlier run made."""
    pattern = re.compile(re.escape(downscaled_prefix) + r"\d+")
    siblings = folder.parent.iterdir() if folder.parent.is_dir() else []
    for path in [folder, *(path for path in siblings if path.is_dir() and pattern.fullmatch(path.name))]:
        shutil.rmtree(path, ignore_errors=True)


def present_downscales(image_dir: Path) -> int:
    """The number of downscaled folders beside ``image_dir``: images_2, images_4, ... up to the first missing."""
    count = 0
    while Path(f"{image_dir}_{2 ** (count + 1)}").is_dir():
        count += 1
    return count


def _place(probe: ImageProbe, target: Path) -> None:
    if probe.readable_by_nerfstudio:
        shutil.copyfile(probe.path, target)
        return
    from vggt_sparse_ns.images import open_rgb

    open_rgb(probe.path).save(target)


def write_images(
    groups: Sequence[ImageGroup], image_dir: Path, num_downscales: int, verbose: bool = False
) -> list[list[Path]]:
    """Write every group's images into ``image_dir`` and its downscaled siblings (all cleared first).

    Returns, per group, the written full-resolution paths in input order.
    """
    from nerfstudio.process_data import process_data_utils
    from nerfstudio.utils.rich_utils import status

    remove_generated(image_dir, f"{image_dir.name}_")
    if _can_use_fast_path(groups):
        return [
            process_data_utils.copy_images_list(
                [probe.path for probe in group.probes],
                image_dir=image_dir,
                num_downscales=num_downscales,
                image_prefix=group.prefix,
                verbose=verbose,
                keep_image_dir=index > 0,
            )
            for index, group in enumerate(groups)
        ]
    image_dir.mkdir(parents=True)
    written = []
    with status(msg="[bold yellow]Copying images...", spinner="bouncingBall", verbose=verbose):
        for group in groups:
            targets = [image_dir / _target_name(probe, group.prefix, i + 1) for i, probe in enumerate(group.probes)]
            for probe, target in zip(group.probes, targets, strict=True):
                _place(probe, target)
            written.append(targets)
    process_data_utils.downscale_images(image_dir, num_downscales, folder_name=image_dir.name, verbose=verbose)
    return written
