"""MegaLoc descriptors of many frames: one batched pass at a reduced resolution, for ranking
which frames see the same place (covisibility)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vggt_sparse_ns.layers.precision import autocast_dtype, imagenet_normalize, unit_range
from vggt_sparse_ns.sparse.megaloc.model import MegaLoc, resize_images

DEFAULT_LONG_SIDE = 322
"""Long side (px) frames are resized to before MegaLoc: 23 patches of 14 px."""


def descriptor_size(height: int, width: int, long_side: int, patch_size: int = 14) -> tuple[int, int]:
    """(height, width) scaled so that the long side is ``long_side``, each rounded to the nearest
    multiple of the patch size (at least one patch)."""
    scale = long_side / max(height, width)
    return (
        max(1, round(height * scale / patch_size)) * patch_size,
        max(1, round(width * scale / patch_size)) * patch_size,
    )


@torch.inference_mode()
def megaloc_descriptors(
    model: MegaLoc,
    images: Tensor,
    long_side: int = DEFAULT_LONG_SIDE,
    batch_size: int = 128,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """L2-normalised float32 descriptors [S, feat_dim] of frames ``images`` [S, 3, H, W] (float in [0, 1] or uint8).

    Frames are resized (bilinear, antialiased) so that the long side is about ``long_side``,
    ImageNet-normalised, and run ``batch_size`` at a time on the images' device, where the
    model must be. ``dtype`` is the autocast dtype of the matrix work: by default bfloat16 on
    CUDA, float16 on MPS, float32 (no autocast) elsewhere; the optimal transport and the
    normalisations stay in float32.
    """
    if images.dim() != 4 or images.shape[1] != 3 or not (images.is_floating_point() or images.dtype == torch.uint8):
        raise ValueError(
            f"expected frames [S, 3, H, W], float in [0, 1] or uint8, got {images.dtype} {tuple(images.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model_device = next(model.parameters()).device
    if model_device != images.device:
        raise ValueError(
            f"the images are on {images.device} and MegaLoc on {model_device}: move one of them, "
            "e.g. model.to(images.device)"
        )
    device_type = images.device.type
    dtype = dtype or autocast_dtype(device_type)
    size = descriptor_size(*images.shape[-2:], long_side, model.config.patch_size)
    descriptors = []
    for batch in images.split(batch_size):
        frames = imagenet_normalize(resize_images(unit_range(batch), size))
        with torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
            descriptors.append(model(frames))
    return F.normalize(torch.cat(descriptors), dim=-1)
