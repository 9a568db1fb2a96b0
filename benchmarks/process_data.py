"""The whole ``ns-process-data vggt-sparse`` command on a folder of large JPEGs, stage by stage.

Generates ``--frames`` deterministic textured JPEGs (1920x1080 by default) unless they are already there,
writes a full-size VGGT-1B checkpoint with random weights when ``--random-checkpoint`` is given and none is
there, then runs the command in-process (``ProcessVGGTSparse(...).main()``, the code path of
``ns-process-data vggt-sparse``) with covisibility attention: once on ``--warmup-frames`` of the images
(CUDA context, kernel compilation), then on all of them. It records every stage's seconds of both runs,
the model's time (the "inference" stage), the whole command's wall-clock time and their ratio.

GPU machine (the random checkpoint is about 5 GB):

    python -m benchmarks.process_data --work-dir /tmp/process-data --random-checkpoint

CPU smoke test with the tiny fixture model:

    python -m benchmarks.process_data --frames 4 --work-dir /tmp/process-data-smoke --device cpu \
        --checkpoint tests/fixtures/vggt_tiny --output /tmp/process_data.json
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from vggt_sparse_ns.defaults import DEFAULT_NEIGHBORS
from vggt_sparse_ns.export.config import ExportConfig
from vggt_sparse_ns.model.config import VGGTConfig
from vggt_sparse_ns.nerfstudio.process_data import ProcessVGGTSparse
from vggt_sparse_ns.pipeline.config import ReconstructionConfig
from vggt_sparse_ns.refine.config import RefineConfig
from vggt_sparse_ns.timing import StageTimer

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "process_data.json"
TEXTURE_OCTAVES = ((6, 100), (24, 60), (96, 40))
"""(cells across the width, amplitude in 8-bit levels) of the smooth colour noise layers."""
GRAIN = 10
"""Per-pixel grain amplitude (8-bit levels): keeps JPEGs at a photo's size (about 0.65 MB at 1920x1080)."""


@dataclass(frozen=True)
class GeneratedJpegs:
    """The generated JPEG inputs a benchmark reads (kept between its runs in its work folder)."""

    work_dir: Path = Path("/tmp/vggt-benchmark")
    """Holds the generated images, kept between runs."""
    frames: int = 100
    """Images."""
    width: int = 1920
    """Image width (px)."""
    height: int = 1080
    """Image height (px)."""
    jpeg_quality: int = 90
    """Quality of the generated JPEGs."""


@dataclass(frozen=True)
class ProcessDataBenchmark(GeneratedJpegs):
    """Settings of one timed run of the command."""

    work_dir: Path = Path("/tmp/vggt-process-data")
    """Holds images/ (the input, kept between runs), checkpoint/ (with --random-checkpoint) and out/ (replaced)."""
    frames: int = 1000
    """Input images."""
    checkpoint: Path | None = None
    """VGGT weights (a folder or file); default: <work-dir>/checkpoint."""
    random_checkpoint: bool = False
    """Write a full-size VGGT-1B checkpoint with random weights at the checkpoint folder if it holds none."""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    """Where the model runs."""
    neighbors: int = DEFAULT_NEIGHBORS
    """Covisibility attention's k."""
    num_downscales: int = 3
    """images_2, images_4, ... folders (and depths_N with --depth)."""
    depth: bool = True
    """Also write depth maps (depth/ and depths_N/)."""
    warmup_frames: int = 8
    """Frames of an untimed first run of the command in the same process (CUDA context, kernel compilation),
    so the timed run is what a user's second run costs; its stage times are kept as warmup_stages_s. 0: none."""
    output: Path = RESULTS
    """JSON list of result rows; a row with the same frames, size, device kind and options is replaced."""


def textured_image(width: int, height: int, seed: int) -> Image.Image:
    """A deterministic photo-like RGB image: smooth colour noise at a few scales plus fine grain."""
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 128, dtype=np.int16)
    for cells, amplitude in TEXTURE_OCTAVES:
        coarse = rng.integers(0, 256, (max(2, cells * height // width), cells, 3), dtype=np.uint8)
        layer = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16)
        pixels += (layer - 128) * amplitude // 128
    pixels += rng.integers(-GRAIN, GRAIN + 1, (height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_jpegs(
    folder: Path, stem: str, frames: int, size: tuple[int, int], quality: int, render: Callable[[int], Image.Image]
) -> list[Path]:
    """``frames`` JPEGs <stem>_00000.jpg, ... in ``folder``, image i being ``render(i)``; files already there with
    the right size are kept, the ones past ``frames`` removed. Written by one thread per CPU, each file whole."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}_{index:05d}.jpg" for index in range(frames)]

    def make(index: int) -> None:
        path = paths[index]
        if path.is_file():
            with Image.open(path) as existing:
                if existing.size == size:
                    return
        temporary = path.with_name(f".{path.name}.tmp")
        render(index).save(temporary, format="JPEG", quality=quality)
        temporary.replace(path)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(make, range(frames)))
    for stale in sorted(folder.glob(f"{stem}_*.jpg"))[frames:]:
        stale.unlink()
    return paths


def generate_images(folder: Path, frames: int, width: int, height: int, quality: int) -> list[Path]:
    """``frames`` photo-like JPEGs image_00000.jpg, ... in ``folder`` (``write_jpegs``)."""
    return write_jpegs(
        folder, "image", frames, (width, height), quality, lambda index: textured_image(width, height, seed=index)
    )


def write_random_checkpoint(folder: Path, device: str, config: VGGTConfig | None = None) -> None:
    """config.json and model.safetensors of a VGGT with random weights (default: the full-size VGGT-1B
    architecture, about 5 GB), built on ``device``."""
    import torch
    from safetensors.torch import save_file

    from benchmarks.common import random_vggt

    config = config or VGGTConfig()
    with torch.device(device):
        model = random_vggt(config, device=device)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    del model
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / ".model.safetensors.tmp"))
    (folder / ".model.safetensors.tmp").replace(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(asdict(config), indent=1) + "\n")


def merge_row(path: Path, row: dict[str, Any], key: tuple[str, ...]) -> None:
    """Add ``row`` to the JSON list at ``path``, replacing the row with the same ``key`` fields."""
    rows = json.loads(path.read_text()) if path.is_file() else []
    rows = [old for old in rows if tuple(old.get(name) for name in key) != tuple(row[name] for name in key)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows + [row], indent=1) + "\n")


def run_command(
    images: Path,
    output_dir: Path,
    checkpoint: Path,
    device: str,
    settings: ProcessDataBenchmark,
    refinement: RefineConfig | None = None,
) -> tuple[StageTimer, float]:
    """``ns-process-data vggt-sparse`` on ``images`` into a fresh ``output_dir``: its stage log and wall-clock seconds.
    ``refinement`` adds --refine and its settings."""
    shutil.rmtree(output_dir, ignore_errors=True)
    command = ProcessVGGTSparse(
        data=images,
        output_dir=output_dir,
        num_downscales=settings.num_downscales,
        reconstruction=ReconstructionConfig(
            checkpoint=str(checkpoint), device=device, attention="covisibility", neighbors=settings.neighbors
        ),
        export=ExportConfig(depth=settings.depth),
        refinement=refinement or RefineConfig(),
    )
    log = StageTimer()
    started = time.perf_counter()
    command.main(timer=log)
    return log, time.perf_counter() - started


def run_warmup(
    paths: list[Path],
    checkpoint: Path,
    device: str,
    settings: ProcessDataBenchmark,
    refinement: RefineConfig | None = None,
) -> StageTimer | None:
    """The untimed first run on the first ``settings.warmup_frames`` of ``paths`` (CUDA context, kernel
    compilation), so that the timed run costs what a user's second run does; None with no warm-up frames."""
    if not settings.warmup_frames:
        return None
    warmup_images = settings.work_dir / "warmup-images"
    shutil.rmtree(warmup_images, ignore_errors=True)
    warmup_images.mkdir(parents=True)
    for path in paths[: settings.warmup_frames]:
        shutil.copyfile(path, warmup_images / path.name)
    timer, _ = run_command(warmup_images, settings.work_dir / "warmup-out", checkpoint, device, settings, refinement)
    return timer


def scene_and_machine(settings: ProcessDataBenchmark, device: str) -> dict[str, Any]:
    """The first fields of a result row: the generated images, the frame graph's k and where it ran."""
    import torch

    return {
        "frames": settings.frames,
        "width": settings.width,
        "height": settings.height,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "cpu_count": os.cpu_count(),
        "neighbors": settings.neighbors,
    }


def rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 3) for name, value in seconds.items()}


def main(settings: ProcessDataBenchmark) -> dict[str, Any]:
    """Run the command once on the generated images (after the warm-up run); returns the row written to
    ``settings.output``."""
    import torch

    started = time.perf_counter()
    images = settings.work_dir / "images"
    paths = generate_images(images, settings.frames, settings.width, settings.height, settings.jpeg_quality)
    generate_seconds = time.perf_counter() - started
    device = settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = settings.checkpoint or settings.work_dir / "checkpoint"
    checkpoint_seconds = None
    if settings.random_checkpoint and not (checkpoint / "model.safetensors").is_file():
        started = time.perf_counter()
        write_random_checkpoint(checkpoint, device)
        checkpoint_seconds = time.perf_counter() - started

    warmup = run_warmup(paths, checkpoint, device, settings)
    log, whole = run_command(images, settings.work_dir / "out", checkpoint, device, settings)

    model_seconds = log.seconds()["inference"]
    row = {
        **scene_and_machine(settings, device),
        "num_downscales": settings.num_downscales,
        "depth": settings.depth,
        "stages_s": rounded(log.seconds()),
        "during_inference_s": rounded({name: seconds for name, (_, seconds) in log.seconds_beside().items()}),
        "model_s": round(model_seconds, 3),
        "whole_s": round(whole, 3),
        "outside_stages_s": round(whole - log.total_seconds, 3),
        "whole_over_model": round(whole / model_seconds, 3),
        "peak_gib": None if log.peak_memory_bytes is None else round(log.peak_memory_bytes / 2**30, 2),
        "input_mb": round(sum(path.stat().st_size for path in paths) / 1e6, 1),
        "warmup_frames": settings.warmup_frames,
        "warmup_stages_s": None if warmup is None else rounded(warmup.seconds()),
        "generate_images_s": round(generate_seconds, 3),
        "write_checkpoint_s": None if checkpoint_seconds is None else round(checkpoint_seconds, 3),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    print(json.dumps(row, indent=1))
    key = ("frames", "width", "height", "device", "neighbors", "num_downscales", "depth")
    merge_row(settings.output, row, key)
    return row


if __name__ == "__main__":
    import tyro  # only the command line needs it

    main(tyro.cli(ProcessDataBenchmark))
