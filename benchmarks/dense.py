"""Dense global attention on the full-size model: the kernels (SDPA's backends, our Gluon kernel), and time/memory against
the original implementation's figures (measured on the same H200: docs/benchmarks/README.md). Rows go to docs/benchmarks/scaling.json.

    python benchmarks/dense.py --kernel-frames 64 --frames 100 200 --size 518x518
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import RESULTS_DIR, merge_rows, random_vggt, smooth_images, time_cuda
from vggt_sparse_ns.sparse import DenseAttention


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kernel-frames", type=int, default=64)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--size", default="518x518", help="WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    gpu = torch.cuda.get_device_name()
    model = random_vggt()

    kernel_images = smooth_images(args.kernel_frames, height, width)
    sdpa = DenseAttention(implementation="sdpa")
    for backend in ("cudnn", "flash", "efficient"):
        seconds, peak, _ = time_cuda(lambda b=backend, i=kernel_images: model(i, sdpa, sdpa_backend=b), repeats=3)
        print(f"kernel {backend:9s} {args.kernel_frames} frames {width}x{height}: {seconds:.3f} s, {peak:.1f} GiB")
    seconds, peak, _ = time_cuda(lambda i=kernel_images: model(i, DenseAttention(implementation="gluon")), repeats=3)
    print(f"kernel gluon     {args.kernel_frames} frames {width}x{height}: {seconds:.3f} s, {peak:.1f} GiB")
    del kernel_images

    rows = []
    for frames in args.frames:
        images = smooth_images(frames, height, width)
        seconds, peak, _ = time_cuda(lambda i=images: model(i, DenseAttention()), repeats=1)
        print(f"dense {frames} frames {width}x{height}: {seconds:.2f} s, {peak:.1f} GiB")
        rows.append({"strategy": "dense", "frames": frames, "height": height, "width": width,
                     "seconds": round(seconds, 3), "peak_gib": round(peak, 2), "gpu": gpu})  # fmt: skip
        del images
    merge_rows(RESULTS_DIR / "scaling.json", rows, key=("strategy", "frames", "height", "width"))


if __name__ == "__main__":
    main()
