"""Time and memory of one exact reconstruction with its frames shared out between GPUs (one process each).

Full-size VGGT (VGGTConfig()) with random weights on every GPU, images made on each process for its own frames
(benchmarks/common.py's smooth images, the same pixels whatever the GPU count); each configuration is warmed up
once, then timed once: all processes start together (barrier) and the row's ``seconds`` is the slowest
process's forward (CUDA synchronised). One GPU runs today's single-process path (no process group). Rows
{strategy, frames, height, width, gpus, seconds, speedup (against the one-GPU row of the file, when there),
per-process seconds, communication seconds, peak GiB} are merged into docs/benchmarks/distributed_scaling.json.

    python -m benchmarks.distributed_scaling --gpus 1 --frames 4096      # the baseline (53.6 s in docs)
    python -m benchmarks.distributed_scaling --gpus 2 --frames 4096
    python -m benchmarks.distributed_scaling --gpus 8 --frames 4096 16384
    python -m benchmarks.distributed_scaling --gpus 2 --frames 64 --device cpu --config-json tests/fixtures/vggt_tiny/config.json   # a check on the CPU
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from benchmarks.common import RESULTS_DIR, merge_rows, random_vggt, smooth_images
from vggt_sparse_ns.distributed.launch import process_group, spawn
from vggt_sparse_ns.distributed.shard import FrameShard
from vggt_sparse_ns.model import VGGTConfig
from vggt_sparse_ns.sparse import CovisibilityAttention, DenseAttention
from vggt_sparse_ns.sparse.base import GlobalAttention
from vggt_sparse_ns.timing import COMMUNICATION_STAGE, StageTimer

ROW_KEY = ("strategy", "frames", "height", "width", "gpus", "gpu")
GIB = 2**30


def strategy_named(name: str) -> GlobalAttention:
    """dense, or covisibility-kN (N neighbours)."""
    if name == "dense":
        return DenseAttention()
    return CovisibilityAttention(neighbors=int(name.removeprefix("covisibility-k")))


def forward_seconds(run: Any, device: torch.device, sharded: bool) -> float:
    """Seconds of one call of ``run`` after a warm-up call, started together on every process."""
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    if sharded:
        dist.barrier()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(config: VGGTConfig, strategy: str, frames: int, height: int, width: int, device_type: str) -> dict:
    """This process's figures for one configuration (sharded over the process group when there is one)."""
    sharded = dist.is_initialized()
    device = torch.device(device_type) if device_type == "cpu" else torch.device("cuda", torch.cuda.current_device())
    model = random_vggt(config, device=str(device))
    shard = FrameShard.of_scene(frames) if sharded else None
    select = shard.local if shard is not None else slice(None)
    images = smooth_images(frames, height, width, device=str(device), select=select)
    timers: list[StageTimer] = []
    outputs = ("cameras", "depth")

    def run() -> Any:
        timers.append(StageTimer(device))
        return model(images, strategy_named(strategy), outputs=outputs, shard=shard, timer=timers[-1])

    seconds = forward_seconds(run, device, sharded)
    communication = timers[-1].seconds().get(COMMUNICATION_STAGE, 0.0)  # the timed call's
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    return {"seconds": seconds, "communication_seconds": communication, "peak_gib": peak}


def run_rank(args: argparse.Namespace, config: VGGTConfig, result_file: Path) -> None:
    """One process of a multi-GPU row: measure, gather on rank 0, which writes the figures to ``result_file``."""
    with process_group(args.device) as rank:
        figures = [
            measure(config, args.strategy, frames, args.height, args.width, args.device) for frames in args.frames
        ]
        gathered: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
        dist.gather_object(figures, gathered, dst=0)
        if rank == 0:
            result_file.write_text(json.dumps(gathered))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8, help="processes, one per GPU (1: today's path)")
    parser.add_argument("--frames", type=int, nargs="+", default=[4096])
    parser.add_argument("--size", default="518x392", help="WIDTHxHEIGHT")
    parser.add_argument("--strategy", default="covisibility-k16", help="dense or covisibility-kN")
    parser.add_argument("--config-json", type=Path, help="model architecture (config.json); default VGGT-1B")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "distributed_scaling.json")
    args = parser.parse_args()
    args.width, args.height = (int(value) for value in args.size.split("x"))
    config = VGGTConfig.from_dict(json.loads(args.config_json.read_text())) if args.config_json else VGGTConfig()
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"

    if args.gpus == 1:
        per_process = [[measure(config, args.strategy, f, args.height, args.width, args.device)] for f in args.frames]
        per_frames = [[figures[0]] for figures in per_process]
    else:
        result_file = args.output.with_suffix(".partial.json")
        status = spawn(partial(run_rank, args, config, result_file), args.gpus)
        if status:
            raise SystemExit(f"a process failed (status {status}); see its message above")
        gathered = json.loads(result_file.read_text())
        result_file.unlink()
        per_frames = [[process[index] for process in gathered] for index in range(len(args.frames))]

    existing = json.loads(args.output.read_text()) if args.output.exists() else []
    rows = []
    for frames, processes in zip(args.frames, per_frames, strict=True):
        seconds = max(figures["seconds"] for figures in processes)
        baseline = [
            row["seconds"]
            for row in existing
            if (row["strategy"], row["frames"], row["height"], row["width"], row["gpus"], row["gpu"])
            == (args.strategy, frames, args.height, args.width, 1, gpu)
        ]
        peaks = [figures["peak_gib"] for figures in processes]
        row = {
            "strategy": args.strategy, "frames": frames, "height": args.height, "width": args.width,
            "gpus": args.gpus, "gpu": gpu, "seconds": round(seconds, 3),
            "speedup": round(baseline[0] / seconds, 2) if baseline and args.gpus > 1 else None,
            "process_seconds": [round(figures["seconds"], 3) for figures in processes],
            "communication_seconds": [round(figures["communication_seconds"], 3) for figures in processes],
            "peak_gib": [None if peak is None else round(peak, 2) for peak in peaks],
        }  # fmt: skip
        print(row)
        rows.append(row)
    merge_rows(args.output, rows, key=ROW_KEY)
    print(f"rows in {args.output}")


if __name__ == "__main__":
    main()
