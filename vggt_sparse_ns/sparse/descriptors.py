"""Frame descriptors for the frame graph, pooled from tokens the model already computes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

POOLING_CHUNK_FRAMES = 64
"""Frames pooled at once, so the fp32 copy of the tokens stays small."""


def pooled_descriptors(patch_tokens: Tensor, power: float = 3.0, eps: float = 1e-6) -> Tensor:
    """GeM pooling of patch tokens [S, P, C] -> unit descriptors [S, C] (fp32).

    Generalised mean over the P tokens: (mean(clamp(x, eps) ** power)) ** (1 / power), then L2
    normalisation, so cosine similarity is a dot product. power 1 is average pooling; large
    powers approach max pooling."""
    if patch_tokens.dim() != 3:
        raise ValueError(f"expected patch tokens [frames, patches, channels], got shape {tuple(patch_tokens.shape)}")
    pooled = [
        chunk.float().clamp(min=eps).pow(power).mean(dim=1).pow(1.0 / power)
        for chunk in patch_tokens.split(POOLING_CHUNK_FRAMES)
    ]
    return F.normalize(torch.cat(pooled), dim=-1)
