"""The implementations of covisibility attention on one global layer's q, k, v: gluon, the warp-specialised
frame-list kernel (Hopper, without the shared special tokens), triton, the Triton frame-list kernel (several
block shapes), and gather (gathered keys, cuDNN/flash SDPA).

    python -m benchmarks.frame_list_attention --frames 1000 --size 518x392 --neighbors 16 [--all-special]

Random bf16 q, k, v of the full-size model (16 heads of 64), a k-nearest-neighbour frame graph of
random descriptors. Useful TFLOP/s count 4 * head_dim * heads * (query tokens x attended keys).
Rows go to docs/benchmarks/frame_list_attention.json.
"""

from __future__ import annotations

import argparse
import json
from functools import partial

import torch

from benchmarks.common import RESULTS_DIR, merge_rows
from vggt_sparse_ns.layers.kernels import DeviceCapabilities
from vggt_sparse_ns.layers.kernels import frame_list_attention as kernels
from vggt_sparse_ns.layers.kernels.frame_list_attention import FrameLists, frame_list_attention
from vggt_sparse_ns.sparse import CovisibilityAttention, FrameLayout
from vggt_sparse_ns.sparse.covisibility import attended_frames
from vggt_sparse_ns.sparse.graph_build import FrameGraphSettings

HEADS, HEAD_DIM, SPECIAL = 16, 64, 5
BLOCK_SHAPES = [
    (64, 64, 4, 3),
    (64, 64, 4, 2),
    (64, 64, 4, 4),
    (64, 128, 4, 3),
    (64, 32, 4, 3),
    (128, 64, 4, 3),
    (128, 64, 8, 3),
]
"""(block_m, block_n, num_warps, num_stages) tried for the Triton kernel."""


def cuda_seconds(fn, repeats: int = 5) -> float:
    """Median seconds of fn() over repeats, after one untimed call (compilation, caches)."""
    fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", default="518x392", help="WIDTHxHEIGHT")
    parser.add_argument("--neighbors", type=int, default=16)
    parser.add_argument("--symmetric", action="store_true", help="symmetric frame graph (default: directed)")
    parser.add_argument("--all-special", action="store_true", help="attend to every frame's special tokens too")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    tokens = SPECIAL + (height // 14) * (width // 14)
    frames = args.frames
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(1, HEADS, frames * tokens, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=generator)
        for _ in range(3)
    )
    descriptors = torch.randn(frames, 256, device="cuda", generator=generator)
    graph = FrameGraphSettings(neighbors=args.neighbors, symmetric=args.symmetric).build(descriptors)
    lists = FrameLists.from_csr(*attended_frames(graph))
    attended = lists.indices.numel() / frames
    keys_per_query = frames * SPECIAL + attended * (tokens - SPECIAL) if args.all_special else attended * tokens
    flops = 4 * HEAD_DIM * HEADS * frames * tokens * keys_per_query
    layout = FrameLayout(1, frames, tokens, SPECIAL)
    name = f"k{args.neighbors}" + ("-symmetric" if args.symmetric else "-directed")
    base = {
        "frames": frames, "height": height, "width": width, "graph": name, "all_special_tokens": args.all_special,
        "gpu": torch.cuda.get_device_name(),
    }  # fmt: skip
    rows = []

    def record(implementation: str, seconds: float, **extra) -> None:
        row = {
            **base,
            "implementation": implementation,
            **extra,
            "seconds": round(seconds, 4),
            "tflops": round(flops / seconds / 1e12, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)

    gather = CovisibilityAttention(graph=graph, implementation="gather", all_special_tokens=args.all_special).prepare(
        layout, torch.empty(1, frames, 1, 1, device="cuda")
    )
    record("gather", cuda_seconds(partial(gather, q, k, v, 0)))
    reference = gather(q, k, v, 0)
    capabilities = DeviceCapabilities.of(q.device)
    if not kernels.gluon_not_supported_reasons(q[0], k[0], v[0], args.all_special, capabilities):
        run = partial(
            frame_list_attention, q[0], k[0], v[0], lists, tokens, SPECIAL, args.all_special, implementation="gluon"
        )
        error = float((run().float() - reference[0].float()).abs().max())
        shape = {
            "block_m": 64 * 3,
            "block_n": kernels.GLUON_BLOCK_N,
            "num_warps": 13,
            "num_stages": kernels.GLUON_STAGES,
        }
        record("gluon", cuda_seconds(run), **shape, max_abs_diff_vs_gather=round(error, 5))
    for block_m, block_n, warps, stages in BLOCK_SHAPES:
        run = partial(
            frame_list_attention, q[0], k[0], v[0], lists, tokens, SPECIAL, args.all_special,
            block_m=block_m, block_n=block_n, num_warps=warps, num_stages=stages, implementation="triton",
        )  # fmt: skip
        error = float((run().float() - reference[0].float()).abs().max())
        shape = {"block_m": block_m, "block_n": block_n, "num_warps": warps, "num_stages": stages}
        record("triton", cuda_seconds(run), **shape, max_abs_diff_vs_gather=round(error, 5))
    merge_rows(
        RESULTS_DIR / "frame_list_attention.json",
        rows,
        key=(
            "frames",
            "height",
            "width",
            "graph",
            "all_special_tokens",
            "implementation",
            "block_m",
            "block_n",
            "num_warps",
            "num_stages",
        ),  # fmt: skip
    )


if __name__ == "__main__":
    main()
