"""Time MegaLoc descriptors for many frames (random weights, full-size by default) and record
the result in docs/benchmarks/scaling.json.

Run on the GPU machine:  python benchmarks/megaloc.py
Smoke test on a CPU:     python benchmarks/megaloc.py --device cpu --frames 4 \
    --config tests/fixtures/megaloc_tiny/config.json --output /tmp/scaling.json
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from vggt_sparse_ns.sparse.megaloc import build_megaloc, megaloc_descriptors
from vggt_sparse_ns.sparse.megaloc.descriptors import DEFAULT_LONG_SIDE

STRATEGY = "megaloc-descriptors"


@dataclass(frozen=True)
class MegaLocBenchmark:
    """Settings of one timing run."""

    frames: int = 1000
    """Frames to describe."""
    height: int = 392
    """Input frame height (px) before the resize to the long side."""
    width: int = 518
    """Input frame width (px)."""
    long_side: int = DEFAULT_LONG_SIDE
    """Long side (px) the frames are resized to inside megaloc_descriptors."""
    batch_size: int = 128
    """Frames per forward pass."""
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    """Autocast dtype of the matrix work."""
    device: str = "cuda"
    """Device to run on (the recorded figure is on CUDA)."""
    config: Path | None = None
    """A MegaLoc config.json (e.g. the tiny fixture's for a smoke test); default: the published architecture."""
    warmup_frames: int = 256
    """Frames described once before timing (kernel selection, allocator)."""
    output: Path = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "scaling.json"
    """JSON list of result rows; the row for the same strategy, frames and size is replaced."""


def merge_row(path: Path, row: dict) -> None:
    """Add ``row`` to the JSON list at ``path`` (created if missing), replacing a row with the
    same strategy, frame count and size."""
    rows = json.loads(path.read_text()) if path.is_file() else []
    key = ("strategy", "frames", "height", "width")
    rows = [old for old in rows if tuple(old.get(name) for name in key) != tuple(row[name] for name in key)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows + [row], indent=2) + "\n")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(settings: MegaLocBenchmark) -> dict:
    device = torch.device(settings.device)
    config = json.loads(settings.config.read_text()) if settings.config else None
    with torch.device(device):
        model = build_megaloc(config).eval()
    dtype = getattr(torch, settings.dtype)
    generator = torch.Generator(device).manual_seed(0)
    frames = torch.rand(settings.frames, 3, settings.height, settings.width, device=device, generator=generator)

    def describe(images: torch.Tensor) -> torch.Tensor:
        return megaloc_descriptors(model, images, settings.long_side, settings.batch_size, dtype)

    describe(frames[: settings.warmup_frames])
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    descriptors = describe(frames)
    _synchronize(device)
    seconds = time.perf_counter() - started
    if not torch.isfinite(descriptors).all():
        raise RuntimeError("non-finite descriptors: the timing would not be meaningful")
    row = {
        "strategy": STRATEGY,
        "frames": settings.frames,
        "height": settings.height,
        "width": settings.width,
        "seconds": round(seconds, 4),
        "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "long_side": settings.long_side,
        "batch_size": settings.batch_size,
        "dtype": settings.dtype,
        "torch": torch.__version__,
    }
    merge_row(settings.output, row)
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    import tyro  # only the command line needs it

    main(tyro.cli(MegaLocBenchmark))
