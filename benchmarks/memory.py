"""Where the GPU memory goes in one forward of the full-size model: a peak per stage and what stays.

    python -m benchmarks.memory --frames 1000 4096 --size 518x392 --neighbors 16
    python -m benchmarks.memory --frames 1000 --taps-on-host --query-chunks --host-images --live-at-peak 25

For each stage of the forward (the model's own stage names: patch_embed, attention_plan, frame_blocks,
global_blocks, head_taps, camera_head, depth_head) the row gives the peak allocated inside it and the
memory held when it ended; beside them, the sizes that explain the peak: the weights, the images, the
residual token stream [S, T, C], one global layer's q, k and v, and what the heads' taps keep until
the heads run (measured: what the aggregator leaves allocated). Rows go to docs/benchmarks/memory.json.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from benchmarks.common import RESULTS_DIR, merge_rows, random_vggt, smooth_images
from vggt_sparse_ns.model import VGGTConfig
from vggt_sparse_ns.sparse import CovisibilityAttention

GIB = 2**30


class MemoryStages:
    """A stand-in for the model's stage timer (its ``stage``) that records GPU memory instead of time: each moment's
    peak counts for the innermost open stage (the allocator's peak is read and reset at every stage
    boundary; no synchronisation is needed, the allocator's counters live on the host)."""

    def __init__(self) -> None:
        self.peak: dict[str, int] = {}
        self.held_before: dict[str, int] = {}
        """At the stage's first entry."""
        self.held_after: dict[str, int] = {}
        """At the stage's last exit."""
        self._open: list[str] = []

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        self._credit()
        self.held_before.setdefault(stage, torch.cuda.memory_allocated())
        self._open.append(stage)
        try:
            yield
        finally:
            self._credit()
            self._open.pop()
            self.held_after[stage] = torch.cuda.memory_allocated()

    def _credit(self) -> None:
        if self._open:
            stage = self._open[-1]
            self.peak[stage] = max(self.peak.get(stage, 0), torch.cuda.max_memory_allocated())
        torch.cuda.reset_peak_memory_stats()


def gib(value: float) -> float:
    return round(value / GIB, 2)


def live_at_peak(snapshot: dict, largest: int) -> list[dict]:
    """The allocations alive at the allocator's highest point in a recorded memory history, grouped by where
    they were made (the innermost frame of this repository's code), largest first.

    Args:
        snapshot: ``torch.cuda.memory._snapshot()`` taken after ``_record_memory_history``.
        largest: how many groups to return.
    Returns:
        ``[{"where": "file:line function", "gib": size, "blocks": count}, ...]``.
    """
    trace = snapshot["device_traces"][torch.cuda.current_device()]
    live: dict[int, dict] = {}
    held = peak = 0
    at_peak: dict[int, dict] = {}
    for event in trace:
        if event["action"] == "alloc":
            live[event["addr"]] = event
            held += event["size"]
            if held > peak:
                peak, at_peak = held, dict(live)
        elif event["action"] == "free_completed" and event["addr"] in live:
            held -= live.pop(event["addr"])["size"]
    groups: dict[str, list[int]] = {}
    for event in at_peak.values():
        ours = [
            f for f in event.get("frames", []) if "vggt_sparse_ns" in f["filename"] or "benchmarks" in f["filename"]
        ]
        where = f"{ours[0]['filename'].split('/')[-1]}:{ours[0]['line']} {ours[0]['name']}" if ours else "elsewhere"
        groups.setdefault(where, []).append(event["size"])
    rows = [{"where": w, "gib": gib(sum(sizes)), "blocks": len(sizes)} for w, sizes in groups.items()]
    return sorted(rows, key=lambda row: -row["gib"])[:largest]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, nargs="+", default=[1000])
    parser.add_argument("--size", default="518x392", help="WIDTHxHEIGHT")
    parser.add_argument("--neighbors", type=int, default=16)
    parser.add_argument("--frames-chunk", type=int, default=16)
    parser.add_argument("--taps-on-host", action="store_true", help="the heads' taps in page-locked host memory")
    parser.add_argument("--query-chunks", action="store_true", help="global attention by chunks of query frames")
    parser.add_argument("--host-images", action="store_true", help="8-bit images in pinned host memory")
    parser.add_argument(
        "--live-at-peak",
        type=int,
        default=0,
        help="record the allocations and print the N largest groups alive at the peak",
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    config = VGGTConfig()
    model = random_vggt(config)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    strategy = CovisibilityAttention(neighbors=args.neighbors)
    tokens = 1 + config.num_register_tokens + (height // config.patch_size) * (width // config.patch_size)
    rows = []
    for frames in args.frames:
        images = smooth_images(frames, height, width, device="cpu" if args.host_images else "cuda")
        if args.host_images:
            images = (images * 255).round().to(torch.uint8).pin_memory()
        options = {"taps_on_host": args.taps_on_host, "query_chunks": args.query_chunks}
        # warm-up: kernels compiled, workspaces made
        model(images[:8], strategy, outputs=["cameras", "depth"], **options)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        stages = MemoryStages()
        torch.cuda.reset_peak_memory_stats()
        if args.live_at_peak:
            torch.cuda.memory._record_memory_history(max_entries=2_000_000)
        predictions = model(
            images, strategy, outputs=["cameras", "depth"], frames_chunk=args.frames_chunk, timer=stages, **options
        )
        torch.cuda.synchronize()
        if args.live_at_peak:
            for group in live_at_peak(torch.cuda.memory._snapshot(), args.live_at_peak):
                print(json.dumps(group))
            torch.cuda.memory._record_memory_history(enabled=None)
        overall_peak = max(stages.peak.values())
        taps_kept = stages.held_before["camera_head"] - before  # what the aggregator leaves for the heads
        row = {
            "frames": frames, "height": height, "width": width, "neighbors": args.neighbors,
            "frames_chunk": args.frames_chunk, **options, "host_images": args.host_images,
            "peak_gib": gib(overall_peak), "reserved_peak_gib": gib(torch.cuda.max_memory_reserved()),
            "weights_gib": gib(weights), "images_gib": gib(images.numel() * images.element_size()),
            "token_stream_fp32_gib": gib(frames * tokens * config.embed_dim * 4),
            "global_qkv_bf16_gib": gib(3 * frames * tokens * config.embed_dim * 2),
            "taps_kept_gib": gib(taps_kept),
            "stage_peak_gib": {name: gib(value) for name, value in stages.peak.items()},
            "stage_held_before_gib": {name: gib(value) for name, value in stages.held_before.items()},
            "stage_held_after_gib": {name: gib(value) for name, value in stages.held_after.items()},
            "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
        }  # fmt: skip
        print(json.dumps(row))
        rows.append(row)
        del images, predictions
        torch.cuda.empty_cache()
    merge_rows(
        RESULTS_DIR / "memory.json",
        rows,
        key=("frames", "height", "width", "neighbors", "frames_chunk", "taps_on_host", "query_chunks"),
    )


if __name__ == "__main__":
    main()
