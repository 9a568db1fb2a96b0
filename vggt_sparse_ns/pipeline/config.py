"""Settings of one reconstruction run (no heavy imports: the CLI and plugins build it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vggt_sparse_ns.defaults import DEFAULT_CHECKPOINT, DEFAULT_MEGALOC_CHECKPOINT, DEFAULT_NEIGHBORS

MIN_FRAMES = 2
"""A dataset needs views from at least two places; VGGT alone would accept one."""
DENSE_MAX_FRAMES = 64
"""``--attention auto`` uses dense attention up to this many frames, covisibility above."""

AttentionChoice = Literal["auto", "dense", "covisibility", "block-sparse"]
DeviceChoice = Literal["auto", "cuda", "mps", "cpu"]
TapsChoice = Literal["auto", "device", "host"]
GlobalQueriesChoice = Literal["auto", "all", "chunks"]


@dataclass(frozen=True)
class ReconstructionConfig:
    """How VGGT turns a set of images into cameras, depth and points."""

    checkpoint: str = DEFAULT_CHECKPOINT
    """VGGT weights: a folder with config.json and model.safetensors (or model.pt), a single weights file,
    or a Hugging Face hub id resolved through the local hub cache."""
    device: DeviceChoice = "auto"
    """Where the model runs; auto picks cuda, then mps, then cpu."""
    preprocess: Literal["crop", "pad"] = "crop"
    """How images are fitted to the model: crop (width 518, centre crop of tall images; the model's training
    setting) or pad (long side 518, white padding to a square; keeps the whole image)."""
    attention: AttentionChoice = "auto"
    """Global attention across frames: dense (every frame sees every frame, memory grows with frames squared),
    covisibility (each frame attends to its most similar frames), block-sparse (predicted token blocks), or
    auto (dense up to dense-max-frames frames, covisibility above)."""
    neighbors: int = DEFAULT_NEIGHBORS
    """Covisibility attention: each frame attends to its k most similar frames and to frame 0 (the world
    frame, which attends to every frame), so the cost per frame is fixed."""
    descriptors: Literal["vggt", "megaloc"] = "vggt"
    """What judges which frames see the same place, for covisibility attention: vggt (the
    model's own pooled patch tokens; free) or megaloc (the MegaLoc place-recognition network, one extra ViT-B
    pass per frame at 322 px; stronger on unordered photo collections and repeated structures)."""
    megaloc_checkpoint: str = DEFAULT_MEGALOC_CHECKPOINT
    """MegaLoc weights for --descriptors megaloc: a folder or file holding model.safetensors, or a hub id."""
    dense_max_frames: int = DENSE_MAX_FRAMES
    """Largest frame count for which --attention auto chooses dense attention."""
    frames_chunk: int = 16
    """Frames processed together wherever the work is per frame: the aggregator's patch embedding and
    frame attention, and the depth and point heads (lower saves memory)."""
    taps: TapsChoice = "auto"
    """Where what the heads read from the aggregator waits for them (11 MB per frame at 518x392): on the
    GPU (device), in page-locked host memory (host: the same results with less GPU memory, copies overlapped
    with the model's work), or auto (host only where the GPU's free memory would not hold the run)."""
    global_queries: GlobalQueriesChoice = "auto"
    """How each global layer attends its queries: all at once (all), or by chunks of frames-chunk query frames
    (chunks: the same results with less GPU memory, only k and v kept for all tokens, each chunk's q computed
    again), or auto (chunks only where the GPU's free memory would not hold the run otherwise)."""

    def __post_init__(self) -> None:
        if self.neighbors < 1:
            raise ValueError(f"--neighbors must be at least 1, not {self.neighbors}.")
        if self.frames_chunk < 1:
            raise ValueError(f"--frames-chunk must be at least 1, not {self.frames_chunk}.")
        if self.taps not in ("auto", "device", "host"):
            raise ValueError(f"--taps must be auto, device or host, not {self.taps!r}.")
        if self.global_queries not in ("auto", "all", "chunks"):
            raise ValueError(f"--global-queries must be auto, all or chunks, not {self.global_queries!r}.")


__all__ = ["DENSE_MAX_FRAMES", "MIN_FRAMES", "ReconstructionConfig"]
