"""How much GPU memory a forward needs, and where the taps' values wait for the heads.

The estimate follows what docs/benchmarks/README.md ("Where the memory goes") measured on the H200: the
peak comes either inside the last global layer (weights, images on the device, the residual token stream,
that layer's q, k, v and attention output, and the taps of the earlier rounds) or while the heads decode
(weights, all taps, the heads' outputs and one chunk's decoder workspace). Keeping the taps in host memory
takes them out of both; the run keeps them on the GPU where they fit, since copying them out and back
costs time. Where the global layer is still too large, its attention runs by chunks of query frames: only
its k and v exist for all tokens, q and the output for one chunk (each chunk's q is computed twice, which
costs a little time, so this too runs only where it is needed).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import torch

from vggt_sparse_ns.model.config import VGGTConfig

HEAD_WORKSPACE_BYTES_PER_PIXEL = 1500
"""The DPT decoder's transient memory per pixel of one chunk's frames (4.2 GiB for 16 frames of 518x392 on
the H200, after subtracting the depth and confidence outputs), with some room."""
HEADROOM = 0.9
"""Plan for this share of the free memory: the allocator's fragmentation and the kernels' workspaces."""


@dataclass(frozen=True)
class MemoryEstimate:
    """A forward's peak on the device, from its parts: the peak is the larger of the attention's and the heads'
    (each with the taps the plan keeps on the device at that moment) above what the whole run holds."""

    held: int
    """The weights and, where they are on the device, the images."""
    attention: int
    """The last global layer's work without the taps: the token stream, q, k, v and the attention output."""
    heads: int
    """The heads' outputs and one chunk's decoder workspace, without the taps."""
    taps: Mapping[str, int] = field(default_factory=dict)
    """Bytes of each tap (the model's names: cameras, depth.0, ...)."""
    taps_in_attention: frozenset[str] = frozenset()
    """The taps already read when the attention peaks (with query chunks: all of them)."""

    def peak(self, on_host: Collection[str] = ()) -> int:
        """The peak with the taps named in ``on_host`` kept on the host and the others on the device."""
        on_device = {name: size for name, size in self.taps.items() if name not in on_host}
        in_attention = sum(size for name, size in on_device.items() if name in self.taps_in_attention)
        return self.held + max(self.attention + in_attention, self.heads + sum(on_device.values()))

    @property
    def taps_on_device(self) -> int:
        """The peak with every tap on the device."""
        return self.peak(())

    @property
    def taps_on_host(self) -> int:
        """The peak with every tap on the host."""
        return self.peak(self.taps)


def estimate_peak_bytes(
    config: VGGTConfig,
    frames: int,
    height: int,
    width: int,
    *,
    weights_bytes: int,
    images_on_device: bool = False,
    frames_chunk: int = 16,
    query_chunks: bool = False,
    points: bool = False,
) -> MemoryEstimate:
    """The estimated peak of one forward (cameras and depth, and with ``points`` the point head's output) of
    ``frames`` images of ``height`` x ``width``.

    Args:
        config: the model's architecture.
        frames, height, width: the scene, in model pixels.
        weights_bytes: the model's parameters on the device.
        images_on_device: the fp32 images sit on the device (the pipeline keeps uint8 images on the host).
        frames_chunk: frames per chunk of the per-frame work and of the heads' decoder.
        query_chunks: global attention runs by chunks of ``frames_chunk`` query frames (``query_chunks``).
        points: the point head runs too (its taps, the size of the depth head's, and its outputs).

    Returns:
        The estimate, whose ``peak(on_host)`` gives the peak for any placement of the taps.

    Example:
        >>> estimate = estimate_peak_bytes(VGGTConfig(), 1000, 392, 518, weights_bytes=4_770_000_000)
        >>> round(estimate.taps_on_device / 2**30, 1), round(estimate.taps_on_host / 2**30, 1)
        (23.3, 16.4)
        >>> chunked = estimate_peak_bytes(VGGTConfig(), 1000, 392, 518, weights_bytes=4_770_000_000, query_chunks=True)
        >>> round(chunked.taps_on_device / 2**30, 1), round(chunked.taps_on_host / 2**30, 1)
        (23.6, 12.8)
    """
    patches = (height // config.patch_size) * (width // config.patch_size)
    tokens = patches + 1 + config.num_register_tokens
    dim = config.embed_dim
    token_stream = frames * tokens * dim * 4  # fp32 residual stream
    chunk_tokens = min(frames, frames_chunk) * tokens
    # In bf16: q, k, v and the attention output of all tokens, or with query chunks k, v of all tokens and one
    # chunk's work at its largest, its MLP: the chunk's input kept for the taps and its norm (fp32), the hidden
    # layer's output and its GELU (bf16); 10 fp32 copies of the chunk's tokens in a count on CPU in fp32 (the
    # hidden layer 4 each), tests/live_tensors.py.
    chunk_mlp = chunk_tokens * dim * (4 + 4 + 2 * 2 * config.mlp_ratio)
    global_layer = 2 * frames * tokens * dim * 2 + int(chunk_mlp) if query_chunks else 4 * frames * tokens * dim * 2
    heads = ("depth", "points") if points else ("depth",)
    taps = {"cameras": frames * 2 * dim * 4}
    last_level = len(config.dpt_out_channels) - 1
    for head in heads:
        for level, channels in enumerate(config.dpt_out_channels):
            taps[f"{head}.{level}"] = frames * patches * channels * 4
    # The last round's taps (the last level and the camera token) are read after its attention, except by query
    # chunks, where k and v live on while they are read, chunk by chunk.
    last_round = {"cameras", *(f"{head}.{last_level}" for head in heads)}
    in_attention = frozenset(name for name in taps if query_chunks or name not in last_round)
    head_outputs = (2 + 4 * points) * frames * height * width * 4  # depth and confidence, points and confidence
    head_workspace = min(frames, frames_chunk) * height * width * HEAD_WORKSPACE_BYTES_PER_PIXEL
    held = weights_bytes + (frames * 3 * height * width * 4 if images_on_device else 0)
    return MemoryEstimate(held, token_stream + global_layer, head_outputs + head_workspace, taps, in_attention)


@dataclass(frozen=True)
class MemoryPlan:
    """Where a forward keeps its taps and how its global layers attend (``VGGT.forward``'s arguments)."""

    taps_on_host: frozenset[str]
    """The taps kept in host memory (none, some or all of the model's)."""
    query_chunks: bool

    def arguments(self) -> dict[str, object]:
        return {"taps_on_host": self.taps_on_host, "query_chunks": self.query_chunks}


def plan_memory(
    taps: str, global_queries: str, estimate: Callable[[bool], MemoryEstimate], free_bytes: int | None
) -> MemoryPlan:
    """The memory plan of a forward: ``taps`` (auto, device or host) and ``global_queries`` (auto, all or chunks)
    as chosen, auto deciding from ``estimate(query_chunks)`` against ``free_bytes`` (None: not a GPU, nothing to
    save). Moving taps to the host costs copies and chunking queries costs a second q projection, so auto
    first keeps all queries and moves the fewest tap bytes that let the run fit; only where no placement fits
    does it attend by query chunks, then again with the fewest tap bytes on the host. Where nothing fits, all
    taps go to the host by query chunks (the run may still run out of memory; its message says what to do).

    Example:
        >>> plan = plan_memory("auto", "auto", lambda chunks: estimate_peak_bytes(VGGTConfig(), 8192, 392, 518,
        ...     weights_bytes=0, query_chunks=chunks), free_bytes=130 * 2**30)
        >>> sorted(plan.taps_on_host), plan.query_chunks
        (['depth.0', 'depth.2'], False)
    """
    if taps not in ("auto", "device", "host"):
        raise ValueError(f"taps placement must be auto, device or host, not {taps!r}")
    if global_queries not in ("auto", "all", "chunks"):
        raise ValueError(f"global attention queries must be auto, all or chunks, not {global_queries!r}")
    query_choices = [False, True] if global_queries == "auto" else [global_queries == "chunks"]
    if free_bytes is None:  # a CPU: host and device are one memory
        query_choices = query_choices[:1]
    for chunks in query_choices:
        forward = estimate(chunks)
        placements = {"device": [frozenset()], "host": [frozenset(forward.taps)]}.get(taps) or _placements(forward)
        for on_host in placements:
            if free_bytes is None or forward.peak(on_host) <= HEADROOM * free_bytes:
                return MemoryPlan(on_host, chunks)
    return MemoryPlan(placements[-1], query_choices[-1])


def _placements(estimate: MemoryEstimate) -> list[frozenset[str]]:
    """Every set of taps to keep on the host, fewest bytes first (a model has a handful of taps)."""
    names = list(estimate.taps)
    subsets = [frozenset(c) for size in range(len(names) + 1) for c in itertools.combinations(names, size)]
    return sorted(subsets, key=lambda subset: (sum(estimate.taps[name] for name in subset), len(subset)))


def free_device_bytes(device: torch.device) -> int | None:
    """Bytes this process may still allocate on a CUDA device: the driver's free memory, within the share
    set by ``torch.cuda.set_per_process_memory_fraction`` (how smaller cards are emulated); None elsewhere."""
    if device.type != "cuda":
        return None
    device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    free, total = torch.cuda.mem_get_info(device)
    allocated, reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    cached = reserved - allocated  # held by PyTorch's allocator, free for its next tensors
    allowed = torch.cuda.get_per_process_memory_fraction(device) * total - allocated
    return int(min(free + cached, allowed))
