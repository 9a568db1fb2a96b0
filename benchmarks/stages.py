"""Where the time goes: one forward of the full-size model split by stage, with an MFU estimate.

    python -m benchmarks.stages --frames 1000 --size 518x392 --strategy covisibility --neighbors 16 [--symmetric]

Rows go to docs/benchmarks/stages.json. MFU counts the aggregator's matrix work (linear layers
and attention scores/values, the attended keys taken from the strategy's summary) against
790 TFLOP/s, the bf16 matrix rate measured on the H200 (docs/benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.common import RESULTS_DIR, merge_rows, random_vggt, smooth_images, time_cuda
from vggt_sparse_ns.model import VGGTConfig
from vggt_sparse_ns.sparse import SparseAttentionConfig
from vggt_sparse_ns.sparse.covisibility import COVISIBILITY_ATTENTION
from vggt_sparse_ns.timing import StageTimer

PEAK_BF16_FLOPS = 790e12


def attended_keys_per_frame(summary: dict, frames: int, tokens: int, special: int) -> float:
    """Mean number of keys a query token attends to in the global layers."""
    if summary.get("strategy") != "covisibility":
        return frames * tokens
    degree = summary["graphs"][0]["degree_mean"]
    if not summary.get("all_special_tokens", True):
        return (degree + 1) * tokens
    return frames * special + (degree + 1) * (tokens - special)


def aggregator_flops(config: VGGTConfig, frames: int, height: int, width: int, global_keys: float) -> float:
    """Matrix FLOPs of the patch embed and the aggregator (2 per multiply-add)."""
    dim = config.embed_dim
    patches = (height // config.patch_size) * (width // config.patch_size)
    dino_tokens = 1 + config.num_register_tokens + patches
    tokens = patches + 1 + config.num_register_tokens
    linear_per_token_block = 2 * dim * dim * (4 + 2 * config.mlp_ratio)
    linear = linear_per_token_block * (config.dino_depth * dino_tokens + 2 * config.depth * tokens)
    local_attention = 4 * dim * (config.dino_depth * dino_tokens**2 + config.depth * tokens**2)
    global_attention = 4 * dim * config.depth * tokens * global_keys
    patch_embed = 2 * 3 * config.patch_size**2 * dim * patches
    return frames * (linear + local_attention + global_attention + patch_embed)


def strategy_name(args: argparse.Namespace) -> str:
    """The row's strategy, e.g. covisibility-k16 (the defaults), covisibility-k16-symmetric-all-special-gather."""
    if args.strategy != "covisibility":
        return args.strategy
    options = [f"k{args.neighbors}", "symmetric" * args.symmetric, "all-special" * args.all_special]
    options.append("" if args.implementation == "auto" else args.implementation)
    return "-".join(["covisibility", *filter(None, options)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, nargs="+", default=[1000])
    parser.add_argument("--size", default="518x392", help="WIDTHxHEIGHT")
    parser.add_argument("--strategy", default="covisibility", choices=["dense", "covisibility", "block-sparse"])
    parser.add_argument("--neighbors", type=int, default=16)
    parser.add_argument("--symmetric", action="store_true", help="covisibility: symmetric frame graph")
    parser.add_argument(
        "--all-special", action="store_true", help="covisibility: attend to every frame's special tokens"
    )
    parser.add_argument(
        "--implementation", default="auto", choices=COVISIBILITY_ATTENTION.choices, help="covisibility implementation"
    )
    parser.add_argument("--frames-chunk", type=int, default=16)
    parser.add_argument("--outputs", nargs="+", default=["cameras", "depth"])
    parser.add_argument("--no-warmup", action="store_true", help="time the first call (for the largest scenes)")
    parser.add_argument(
        "--host-images",
        action="store_true",
        help="images in pinned host memory, moved a chunk at a time (the pipeline keeps its images on the host)",
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    config = VGGTConfig()
    model = random_vggt(config)
    attention = SparseAttentionConfig(strategy=args.strategy)
    if args.strategy == "covisibility":
        from dataclasses import replace

        covisibility = replace(
            attention.covisibility,
            neighbors=args.neighbors,
            symmetric=args.symmetric,
            all_special_tokens=args.all_special,
            implementation=args.implementation,
        )
        attention = replace(attention, covisibility=covisibility)
    strategy = attention.build()
    rows = []
    for frames in args.frames:
        images = smooth_images(frames, height, width, device="cpu" if args.host_images else "cuda")
        if args.host_images:
            images = images.pin_memory()
        timer = StageTimer("cuda")

        def run(timer: StageTimer | None = None, images: torch.Tensor = images):
            return model(
                images, strategy, outputs=args.outputs, frames_chunk=args.frames_chunk, timer=timer,
            )  # fmt: skip

        if not args.no_warmup:
            run()
        seconds, peak, predictions = time_cuda(lambda t=timer: run(t), repeats=1, warmup=0)
        stages = {name: round(value, 3) for name, value in timer.seconds().items()}
        summary = predictions["attention"]
        keys = attended_keys_per_frame(summary, frames, 5 + (height // 14) * (width // 14), 5)
        flops = aggregator_flops(config, frames, height, width, keys)
        aggregator_seconds = sum(stages[s] for s in ("patch_embed", "frame_blocks", "global_blocks"))
        row = {
            "strategy": strategy_name(args), "implementation": summary.get("implementation"),
            "frames": frames, "height": height, "width": width, "outputs": args.outputs,
            "host_images": args.host_images, "seconds": round(seconds, 3), "peak_gib": round(peak, 2), "stages_s": stages,
            "aggregator_tflop": round(flops / 1e12, 1),
            "aggregator_mfu": round(flops / aggregator_seconds / PEAK_BF16_FLOPS, 3),
            "graph": summary.get("graphs", [None])[0], "gpu": torch.cuda.get_device_name(),
        }  # fmt: skip
        print(json.dumps(row))
        rows.append(row)
        del images, predictions
    merge_rows(RESULTS_DIR / "stages.json", rows, key=("strategy", "frames", "height", "width"))


if __name__ == "__main__":
    main()
