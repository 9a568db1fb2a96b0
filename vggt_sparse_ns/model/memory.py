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

from dataclasses import dataclass

import torch

from vggt_sparse_ns.model.config import VGGTConfig

HEAD_WORKSPACE_BYTES_PER_PIXEL = 1500
"""The DPT decoder's transient memory per pixel of one chunk's frames (4.2 GiB for 16 frames of 518x392 on
the H200, after subtracting the depth and confidence outputs), with some room."""
HEADROOM = 0.9
"""Plan for this share of the free memory: the allocator's fragmentation and the kernels' workspaces."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of a forward's peak on the device, with the taps on the device or on the host."""

    taps_on_device: int
    taps_on_host: int


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
) -> MemoryEstimate:
    """The estimated peak of one forward (cameras and depth) of ``frames`` images of ``height`` x ``width``.

    Args:
        config: the model's architecture.
        frames, height, width: the scene, in model pixels.
        weights_bytes: the model's parameters on the device.
        images_on_device: the fp32 images sit on the device (the pipeline keeps uint8 images on the host).
        frames_chunk: frames per chunk of the per-frame work and of the heads' decoder.
        query_chunks: global attention runs by chunks of ``frames_chunk`` query frames (``query_chunks``).

    Returns:
        The peak bytes with the taps kept on the device and with them kept on the host.

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
    level_taps = [frames * patches * channels * 4 for channels in config.dpt_out_channels]
    camera_tap = frames * 2 * dim * 4
    taps_before_last_round = sum(level_taps[:-1])
    all_taps = sum(level_taps) + camera_tap
    head_outputs = 2 * frames * height * width * 4  # depth and confidence
    head_workspace = min(frames, frames_chunk) * height * width * HEAD_WORKSPACE_BYTES_PER_PIXEL
    base = weights_bytes + (frames * 3 * height * width * 4 if images_on_device else 0)

    def peak(taps_on_device: bool) -> int:
        # By query chunks, k and v live on while the last round's taps are read, chunk by chunk.
        taps_during_attention = all_taps if query_chunks else taps_before_last_round
        attention = token_stream + global_layer + (taps_during_attention if taps_on_device else 0)
        heads = head_outputs + head_workspace + (all_taps if taps_on_device else 0)
        return base + max(attention, heads)

    return MemoryEstimate(taps_on_device=peak(True), taps_on_host=peak(False))


def taps_on_host(choice: str, estimate: MemoryEstimate, free_bytes: int | None) -> bool:
    """Whether to keep the taps on the host: as chosen ("device" or "host"), or with "auto" only where the
    device's free memory (``None``: not a GPU, nothing to save) cannot hold the forward with them on the
    device."""
    if choice not in ("auto", "device", "host"):
        raise ValueError(f"taps placement must be auto, device or host, not {choice!r}")
    if choice != "auto":
        return choice == "host"
    return free_bytes is not None and estimate.taps_on_device > HEADROOM * free_bytes


def query_chunks(choice: str, estimate: MemoryEstimate, free_bytes: int | None, taps_on_host: bool) -> bool:
    """Whether global attention runs by chunks of query frames: as chosen ("chunks" or "all"), or with "auto"
    only where the device's free memory (``None``: not a GPU) cannot hold the forward with all queries at
    once (``estimate``: of that forward) and the taps where ``taps_on_host`` puts them."""
    if choice not in ("auto", "all", "chunks"):
        raise ValueError(f"global attention queries must be auto, all or chunks, not {choice!r}")
    if choice != "auto":
        return choice == "chunks"
    peak = estimate.taps_on_host if taps_on_host else estimate.taps_on_device
    return free_bytes is not None and peak > HEADROOM * free_bytes


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
