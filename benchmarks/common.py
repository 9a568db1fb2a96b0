"""Helpers shared by the GPU benchmarks: a full-size VGGT with random weights, timing, results files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vggt_sparse_ns.model import VGGT, VGGTConfig

RESULTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


def random_vggt(config: VGGTConfig | None = None, device: str = "cuda", seed: int = 0) -> VGGT:
    """A VGGT with random weights: PyTorch's default init, and the learned tokens and position
    embeddings (zeros at construction) drawn from N(0, 0.02) so frames and tokens differ."""
    torch.manual_seed(seed)
    model = VGGT(config or VGGTConfig())
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("_token", "pos_embed", "register_tokens", "empty_pose_tokens")):
                parameter.normal_(0.0, 0.02)
    return model.to(device).eval()


def smooth_images(
    frames: int, height: int, width: int, device: str = "cuda", seed: int = 0, select: slice = slice(None)
) -> torch.Tensor:
    """Random images in [0, 1] with image-like spatial correlation (upsampled low-res noise); ``select``: only
    these frames of the scene (a process's share), the same pixels as in the whole scene."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    coarse = torch.rand(frames, 3, height // 16 + 1, width // 16 + 1, generator=generator)[select]
    images = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return images.clamp(0, 1).to(device)


def time_cuda(fn: Callable[[], Any], repeats: int = 1, warmup: int = 1) -> tuple[float, float, Any]:
    """(median seconds, peak GiB allocated during the timed calls, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        del result
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30
    return sorted(times)[len(times) // 2], peak, result


def merge_rows(path: Path, rows: list[dict[str, Any]], key: tuple[str, ...]) -> None:
    """Add rows to a JSON list file, replacing rows with the same key fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else []
    new_keys = {tuple(row.get(k) for k in key) for row in rows}
    kept = [row for row in existing if tuple(row.get(k) for k in key) not in new_keys]
    path.write_text(json.dumps(kept + rows, indent=1) + "\n")
