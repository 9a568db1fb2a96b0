"""Copies between host arrays and device tensors for the exporters.

To and from a CUDA device they go through page-locked memory (PyTorch's caching host allocator reuses
it): several times faster than pageable memory, whose fresh pages also fault on first touch. Gigabytes
of depth maps and masks cross here, so this is where the exporters' transfer time goes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_device(array: np.ndarray, device: torch.device | str) -> Tensor:
    """A host array as a tensor on ``device`` (no copy on the CPU)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def to_host(tensor: Tensor) -> np.ndarray:
    """A tensor as a host array (no copy for a CPU tensor)."""
    if tensor.device.type != "cuda":
        return tensor.cpu().numpy()
    return torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True).copy_(tensor).numpy()
