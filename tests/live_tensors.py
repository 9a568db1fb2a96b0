"""A CPU-visible measure of memory: the bytes of the tensors an operation creates that are still alive, and their
peak (what CUDA's memory statistics report on a GPU, without the kernels' internal workspaces)."""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveTensorBytes(TorchDispatchMode):
    """Counts each new storage an op returns until it is freed; storages of ``existing`` tensors (inputs,
    weights) and their views are not counted."""

    def __init__(self, existing: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.counted: set[int] = {tensor.untyped_storage().data_ptr() for tensor in existing}
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                self._count(tensor.untyped_storage())
        return out

    def _count(self, storage: torch.UntypedStorage) -> None:
        address, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or address in self.counted:
            return
        self.counted.add(address)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, address, size)

    def _free(self, address: int, size: int) -> None:
        self.counted.discard(address)
        self.live -= size
