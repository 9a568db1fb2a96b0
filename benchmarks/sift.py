"""Our SIFT in PyTorch (refine/sift.py) against pycolmap's on generated views: images per second, with decoding
(``extract_features`` as ``--refine`` runs it) and SIFT alone on decoded images already on the device.

The views are benchmarks/refine.py's (photographs on a plane seen from a circling camera, JPEG). pycolmap runs in
worker processes, one per usable CPU (as in ``--refine``); ours on ``--device``. GPU machine (the row goes to
docs/benchmarks/sift.json):

    python -m benchmarks.sift --frames 200 --device cuda --work-dir /tmp/sift-bench

This machine, small: ``python -m benchmarks.sift --frames 4 --width 640 --height 360 --output None``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from benchmarks.process_data import GeneratedJpegs, merge_row
from benchmarks.refine import generate_views
from vggt_sparse_ns.refine.features import UPSAMPLE_BELOW, extract_features, read_grey
from vggt_sparse_ns.refine.sift import detect_and_describe

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "sift.json"


@dataclass(frozen=True)
class SiftBenchmark(GeneratedJpegs):
    """Settings of one timing of both SIFTs on the same generated views."""

    work_dir: Path = Path("/tmp/vggt-sift-bench")
    """Holds images_<width>x<height>_<frames>/ (the views, kept between runs)."""
    max_image_size: int = 1600
    """--refine-max-image-size: the longest side SIFT sees."""
    max_features: int = 4096
    """--refine-max-features."""
    device: Literal["cuda", "mps", "cpu"] = "cuda"
    """Where our SIFT runs."""
    skip_pycolmap: bool = False
    """Time ours only (pycolmap's CPU SIFT takes about a second per 1600x900 image and CPU)."""
    output: Path | None = RESULTS
    """JSON list of result rows to add this run's row to (a row with the same settings is replaced); None:
    print only."""


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(run) -> tuple[float, Any]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def sift_alone(paths: list[Path], settings: SiftBenchmark, device: torch.device) -> tuple[float, int]:
    """(seconds, keypoints found) of ``detect_and_describe`` over the decoded images, already on the device, after a
    warm-up on the first image."""
    greys = [read_grey(path, settings.max_image_size)[0] for path in paths]
    batch = torch.from_numpy(np.stack(greys)).to(device)
    upsample = max(batch.shape[1:]) < UPSAMPLE_BELOW
    detect_and_describe(batch[:1], settings.max_features, upsample=upsample)
    _synchronise(device)
    started = time.perf_counter()
    found = detect_and_describe(batch, settings.max_features, upsample=upsample)
    _synchronise(device)
    return time.perf_counter() - started, sum(len(f.keypoints) for f in found)


def main(settings: SiftBenchmark) -> dict[str, Any]:
    """Generate (or reuse) the views and time both SIFTs on them; returns (and prints) the row."""
    folder = settings.work_dir / f"images_{settings.width}x{settings.height}_{settings.frames}"
    paths = generate_views(folder, settings.frames, settings.width, settings.height, settings.jpeg_quality)
    device = torch.device(settings.device)
    common = {"max_image_size": settings.max_image_size, "max_features": settings.max_features}
    extract_features(paths[:1], extractor="torch", device=device, **common)  # warm-up (kernels, allocator)
    _synchronise(device)
    torch_seconds, torch_features = _timed(lambda: extract_features(paths, extractor="torch", device=device, **common))
    alone_seconds, alone_keypoints = sift_alone(paths, settings, device)
    row: dict[str, Any] = {
        "frames": settings.frames,
        "width": settings.width,
        "height": settings.height,
        "max_image_size": settings.max_image_size,
        "max_features": settings.max_features,
        "device": settings.device,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpus": len(os.sched_getaffinity(0)),
        "torch_images_per_s": round(settings.frames / torch_seconds, 2),
        "torch_sift_alone_images_per_s": round(settings.frames / alone_seconds, 2),
        "torch_keypoints_per_image": round(float(np.mean([len(f) for f in torch_features])), 1),
    }
    assert alone_keypoints == sum(len(f) for f in torch_features), "the same images give the same keypoints"
    if not settings.skip_pycolmap:
        pycolmap_seconds, pycolmap_features = _timed(lambda: extract_features(paths, extractor="pycolmap", **common))
        row["pycolmap_images_per_s"] = round(settings.frames / pycolmap_seconds, 2)
        row["pycolmap_keypoints_per_image"] = round(float(np.mean([len(f) for f in pycolmap_features])), 1)
    print(json.dumps(row, indent=1))
    if settings.output is not None:
        merge_row(settings.output, row, ("frames", "width", "height", "max_image_size", "max_features", "device"))
    return row


if __name__ == "__main__":
    import tyro  # only the command line needs it

    main(tyro.cli(SiftBenchmark))
