"""Which precision for the aggregator on CUDA: bf16 autocast over fp32 weights (the original's
way) or bf16-stored weights? Both are compared with an fp32 reference (TF32 off) on the
full-size model with random weights; writes docs/benchmarks/precision.json.

    python benchmarks/precision.py --frames 8 --height 392 --width 518
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.common import RESULTS_DIR, random_vggt, smooth_images, time_cuda

KEYS = ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf")


def relative_errors(output: dict, reference: dict) -> dict[str, float]:
    return {
        key: float((output[key].double() - reference[key].double()).norm() / reference[key].double().norm())
        for key in KEYS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=392)
    parser.add_argument("--width", type=int, default=518)
    args = parser.parse_args()

    model = random_vggt()
    images = smooth_images(args.frames, args.height, args.width)

    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, False
    reference = model(images, sdpa_backend="math", compute_dtype=torch.float32)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True  # PyTorch's defaults

    rows = []
    seconds, peak, autocast_out = time_cuda(lambda: model(images), repeats=3)
    rows.append({"variant": "fp32 weights, bf16 autocast", "seconds": seconds, "peak_gib": peak,
                 "relative_error": relative_errors(autocast_out, reference)})  # fmt: skip
    del autocast_out
    model.aggregator.to(torch.bfloat16)
    seconds, peak, bf16_out = time_cuda(lambda: model(images), repeats=3)
    rows.append({"variant": "bf16 aggregator weights, bf16 autocast", "seconds": seconds, "peak_gib": peak,
                 "relative_error": relative_errors(bf16_out, reference)})  # fmt: skip

    result = {"frames": args.frames, "height": args.height, "width": args.width,
              "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}  # fmt: skip
    (RESULTS_DIR / "precision.json").parent.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "precision.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
