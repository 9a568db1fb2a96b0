"""Input normalisation and compute precision shared by the ViT-based models (VGGT, MegaLoc)."""

from __future__ import annotations

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AUTOCAST_DTYPES = {"cuda": torch.bfloat16, "mps": torch.float16}
"""Autocast dtype of the matrix work per device type; float32 (no autocast) elsewhere.
bf16 autocast over fp32 weights was measured closer to the fp32 result than bf16-stored
weights at the same speed (docs/benchmarks/README.md)."""


def unit_range(images: Tensor) -> Tensor:
    """Images as float32 in [0, 1]: 8-bit images (0-255) divided by 255, float images converted. Images
    travel to the accelerator in 8 bits (a quarter of the bytes) and become float there."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 (0-255) or float in [0, 1], not {images.dtype}")
    return images.float()


def imagenet_normalize(images: Tensor) -> Tensor:
    """Images [..., 3, H, W] in [0, 1] -> normalised with ImageNet's channel statistics."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(3, 1, 1)
    return (images - mean) / std


def autocast_dtype(device_type: str) -> torch.dtype:
    return AUTOCAST_DTYPES.get(device_type, torch.float32)
