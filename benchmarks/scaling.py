"""Time and peak GPU memory of the whole model against frame count, per global-attention strategy.

Full-size VGGT (VGGTConfig()) with random weights; each configuration is warmed up once, then
timed once (CUDA synchronised). Configurations that run out of memory are recorded as ``oom``;
those predicted to overrun the per-call time budget are skipped (run them in another call).
Rows {strategy, frames, height, width, seconds, peak_gib, gpu, ...} are merged into
docs/benchmarks/scaling.json (keyed by strategy, frames and size), the plot
docs/benchmarks/scaling.png is redrawn from all rows, and the frame-graph build time at
``--graph-frames`` frames goes to docs/benchmarks/graph_build.json.

    python -m benchmarks.scaling --frames 50 100 200 300 --sizes 518x392
    python -m benchmarks.scaling --quick
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS_DIR, merge_rows, random_vggt, smooth_images
from vggt_sparse_ns.model import VGGTConfig
from vggt_sparse_ns.model.memory import estimate_peak_bytes, free_device_bytes, plan_memory
from vggt_sparse_ns.sparse import BlockSparseAttention, CovisibilityAttention, DenseAttention
from vggt_sparse_ns.sparse.base import GlobalAttention
from vggt_sparse_ns.sparse.graph_build import FrameGraphSettings

STRATEGIES: dict[str, GlobalAttention] = {
    "dense": DenseAttention(),
    "covisibility-k8": CovisibilityAttention(neighbors=8),
    "covisibility-k16": CovisibilityAttention(neighbors=16),
    "block-sparse": BlockSparseAttention(cdf_threshold=0.9, top_ratio=0.5),
    "block-sparse-r25": BlockSparseAttention(cdf_threshold=0.9, top_ratio=0.25),
    "covisibility-k16-all-special": CovisibilityAttention(neighbors=16, all_special_tokens=True),
    "covisibility-k8-symmetric-all-special": CovisibilityAttention(
        neighbors=8, symmetric=True, all_special_tokens=True
    ),
    "covisibility-k16-symmetric-all-special": CovisibilityAttention(
        neighbors=16, symmetric=True, all_special_tokens=True
    ),
}
"""Covisibility rows use the defaults (a directed graph, the attended frames' tokens only) unless named;
rows named ...-gather were measured before the frame-list kernel, with the gather path."""
SCALING_EXPONENT = {"dense": 2.0}
"""How time grows with frames, for predicting whether a configuration fits the budget (others: 1.3)."""
ROW_KEY = ("strategy", "frames", "height", "width", "memory_cap_gib", "taps", "global_queries")


def measure(run: Callable[[], Any], device: torch.device, warmup: bool) -> tuple[float, float | None, Any]:
    """(seconds of one timed call, peak GiB allocated during it on CUDA, its result)."""
    if warmup:
        run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return seconds, peak, result


def attention_facts(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures that explain a row's cost: graph degree and dense-cost fraction, kept blocks."""
    facts: dict[str, Any] = {}
    if "graphs" in summary:
        graph = summary["graphs"][0]
        facts.update(
            degree_mean=round(graph["degree_mean"], 2), dense_cost_fraction=round(graph["dense_cost_fraction"], 4)
        )
    if "kept_block_fraction" in summary:
        fractions = list(summary["kept_block_fraction"].values())
        facts["kept_block_fraction"] = round(sum(fractions) / len(fractions), 4)
    return facts


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def time_graph_build(frames: int, device: torch.device, path: Path, gpu: str) -> None:
    """Frame-graph construction time (k = 16, 1024-d descriptors like VGGT's patch tokens)."""
    descriptors = torch.randn(frames, 1024, device=device, generator=torch.Generator(device).manual_seed(0))
    seconds, _, graph = measure(lambda: FrameGraphSettings(neighbors=16).build(descriptors), device, warmup=True)
    print(f"frame graph, {frames} frames: {seconds:.3f} s, {graph.stats()}")
    row = {"frames": frames, "dim": 1024, "neighbors": 16, "seconds": round(seconds, 4), "gpu": gpu}
    merge_rows(path, [row], key=("frames", "dim", "neighbors", "gpu"))


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Seconds and peak GiB against frames, one column per image size, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    # One curve per strategy: the rows without a memory cap, images on the device as the figures always were.
    measured = [
        row
        for row in rows
        if row.get("seconds") is not None and not row.get("memory_cap_gib") and not row.get("host_images")
    ]
    sizes = sorted({(row["width"], row["height"]) for row in measured})
    if not sizes:
        return
    figure, axes = plt.subplots(2, len(sizes), figsize=(6 * len(sizes), 8), squeeze=False)
    for column, (width, height) in enumerate(sizes):
        for strategy in sorted({row["strategy"] for row in measured}):
            points = sorted(
                (row["frames"], row["seconds"], row["peak_gib"])
                for row in measured
                if row["strategy"] == strategy and (row["width"], row["height"]) == (width, height)
            )
            if points:
                frames, seconds, peaks = zip(*points, strict=True)
                axes[0, column].plot(frames, seconds, marker="o", label=strategy)
                axes[1, column].plot(frames, peaks, marker="o", label=strategy)
        axes[0, column].set(title=f"{width}x{height}", ylabel="seconds per forward", xscale="log", yscale="log")
        axes[1, column].set(xlabel="frames", ylabel="peak GiB", xscale="log")
        for axis in axes[:, column]:
            axis.xaxis.set_major_formatter(ScalarFormatter())
            axis.yaxis.set_major_formatter(ScalarFormatter())
            axis.grid(True, which="both", alpha=0.3)
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[50, 100, 200, 300, 500, 1000])
    parser.add_argument("--sizes", nargs="+", default=["518x392", "518x518"], help="WIDTHxHEIGHT")
    parser.add_argument("--strategies", nargs="+", choices=sorted(STRATEGIES), default=list(STRATEGIES)[:4])
    parser.add_argument("--weights", choices=["fp32", "bf16"], default="fp32",
                        help="fp32: fp32 weights under bf16 autocast (the original's way); bf16: bf16 aggregator weights")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="8 and 16 frames at 518x392 only")
    parser.add_argument(
        "--budget-minutes", type=float, default=8.5, help="start no configuration predicted to end later"
    )
    parser.add_argument("--no-warmup", action="store_true", help="time the first call (includes compile and planning)")
    parser.add_argument("--skip-existing", action="store_true", help="skip configurations already in the output")
    parser.add_argument("--graph-frames", type=int, default=10_000, help="frame-graph build timing (0: skip)")
    parser.add_argument("--config-json", type=Path, help="model architecture (config.json); default VGGT-1B")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--memory-cap-gib", type=float, help="emulate a smaller card: cap this process's GPU memory")
    parser.add_argument("--taps", choices=["auto", "device", "host"], default="auto",
                        help="where the heads' inputs wait (auto: the run's memory plan, as the pipeline decides)")  # fmt: skip
    parser.add_argument("--global-queries", choices=["auto", "all", "chunks"], default="auto",
                        help="global attention by query chunks (auto: the run's memory plan, as the pipeline decides)")  # fmt: skip
    parser.add_argument("--host-images", action="store_true",
                        help="8-bit images in page-locked host memory, as the pipeline keeps them")  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "scaling.json")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "scaling.png")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.sizes = [8, 16], ["518x392"]

    started = time.monotonic()
    budget = args.budget_minutes * 60
    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    config = VGGTConfig.from_dict(json.loads(args.config_json.read_text())) if args.config_json else VGGTConfig()
    model = random_vggt(config, device=str(device))
    if args.memory_cap_gib:
        torch.cuda.set_per_process_memory_fraction(args.memory_cap_gib * 2**30 / torch.cuda.mem_get_info(device)[1])
    if args.weights == "bf16":
        model.aggregator.to(torch.bfloat16)
    done = set()
    if args.skip_existing and args.output.exists():
        done = {tuple(row.get(k) for k in ROW_KEY) for row in json.loads(args.output.read_text())}

    if args.graph_frames:
        time_graph_build(args.graph_frames, device, args.output.parent / "graph_build.json", gpu)
    for size in args.sizes:
        width, height = (int(value) for value in size.split("x"))
        for name in args.strategies:
            previous: tuple[int, float] | None = None
            for frames in sorted(args.frames):
                if (name, frames, height, width, args.memory_cap_gib, args.taps, args.global_queries) in done:
                    continue
                elapsed = time.monotonic() - started
                if previous is not None:
                    growth = (frames / previous[0]) ** SCALING_EXPONENT.get(name, 1.3)
                    predicted = previous[1] * growth * (1 if args.no_warmup else 2)
                    if elapsed + predicted > budget:
                        print(f"skip {name} {frames} frames {size}: ~{predicted:.0f} s would pass the time budget")
                        continue
                images = smooth_images(frames, height, width, device="cpu" if args.host_images else str(device))
                if args.host_images:
                    images = (images * 255).round().to(torch.uint8).pin_memory()
                plan = plan_memory(
                    args.taps, args.global_queries,
                    lambda chunks, f=frames, h=height, w=width: estimate_peak_bytes(
                        config, f, h, w, weights_bytes=0, images_on_device=not args.host_images, query_chunks=chunks
                    ),
                    free_device_bytes(device),
                )  # fmt: skip
                on_host, chunks = sorted(plan.taps_on_host), plan.query_chunks
                row: dict[str, Any] = {"strategy": name, "frames": frames, "height": height, "width": width,
                                       "memory_cap_gib": args.memory_cap_gib, "taps": args.taps,
                                       "taps_on_host": on_host, "global_queries": args.global_queries,
                                       "query_chunks": chunks, "host_images": args.host_images,
                                       "weights": args.weights, "gpu": gpu}  # fmt: skip
                try:
                    seconds, peak, predictions = measure(
                        lambda i=images, s=STRATEGIES[name], p=plan: model(
                            i, s, outputs=("cameras", "depth"), **p.arguments()
                        ),
                        device,
                        warmup=not args.no_warmup,
                    )
                except torch.OutOfMemoryError as error:  # its message says how much was allocated and reserved
                    print(str(error)[:1200])
                    seconds = None
                del images
                if seconds is None:  # after the except block, so its traceback no longer holds memory
                    free_memory()
                    row.update(seconds=None, peak_gib=None, oom=True)
                    print(f"{name} {frames} frames {size}: out of memory; larger frame counts skipped")
                    merge_rows(args.output, [row], key=ROW_KEY)
                    break
                previous = (frames, seconds)
                row.update(seconds=round(seconds, 3), peak_gib=None if peak is None else round(peak, 2))
                row.update(attention_facts(predictions["attention"]))
                print(f"{name} {frames} frames {size}: {seconds:.2f} s, peak {row['peak_gib']} GiB, {row}")
                merge_rows(args.output, [row], key=ROW_KEY)
                del predictions
                free_memory()
    plot(json.loads(args.output.read_text()) if args.output.exists() else [], args.plot)
    print(f"rows in {args.output}, plot in {args.plot}; {time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
