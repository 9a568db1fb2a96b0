"""The aggregator: the patch-embed ViT, then alternating frame and global attention rounds.

Per frame, tokens are [camera, registers, patches]. Frame blocks attend within a frame;
global blocks attend across frames through the global-attention strategy. Of the rounds,
only what the heads read is kept: each head registers a ``Tap`` that reduces a round's
tokens, concat(frame output, global output), to what it needs as soon as a chunk of frames has
both (the global block hands each chunk over before and after its update, so no copy of the
round's tokens is kept). Per-frame work runs on chunks of frames, so activation memory does not
grow with S beyond the residual stream and one global layer's q, k, v.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from vggt_sparse_ns.layers.attention import NormImplementation
from vggt_sparse_ns.layers.block import Block
from vggt_sparse_ns.layers.precision import imagenet_normalize, unit_range
from vggt_sparse_ns.layers.rope import RotaryEmbedding2D, grid_positions
from vggt_sparse_ns.layers.vit import VisionTransformer
from vggt_sparse_ns.model.config import VGGTConfig
from vggt_sparse_ns.sparse.base import AttentionPlan, FrameLayout, GlobalAttention
from vggt_sparse_ns.timing import StageTimer, stage_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tap:
    """What a head reads from one round: ``read`` maps the round's tokens of N frames
    [N, T, 2C] to what is kept for them [N, ...]."""

    layer: int
    read: Callable[[Tensor], Tensor]


class TapStore:
    """Where the taps' values wait for the heads: on the model's device, or for the taps named in ``on_host`` (all
    with True; CUDA only) in page-locked host memory, copied there chunk by chunk on a stream of their own so that
    the copies overlap the next chunks' work. The values are the same bits either way; the heads move each chunk
    of frames back to the device as they decode it. Where the host cannot page-lock a tap's memory (thousands of
    frames: tens of GB), that tap waits in ordinary host memory instead, whose copies do not overlap."""

    def __init__(self, device: torch.device, on_host: bool | Collection[str]) -> None:
        self.on_host = (lambda name: bool(on_host)) if isinstance(on_host, bool) else on_host.__contains__
        self.values: dict[str, Tensor] = {}
        self._copies = torch.cuda.Stream(device) if device.type == "cuda" and on_host else None

    def put(self, name: str, scene_frames: int, frames: slice, value: Tensor) -> None:
        """Store ``value`` [B, n, ...] as frames ``frames`` of tap ``name`` ([B, scene_frames, ...])."""
        to_host = self._copies is not None and self.on_host(name)
        if name not in self.values:
            shape = (value.shape[0], scene_frames, *value.shape[2:])
            self.values[name] = _host_tensor(name, shape, value.dtype) if to_host else value.new_empty(shape)
        if not to_host:
            self.values[name][:, frames] = value
            return
        self._copies.wait_stream(torch.cuda.current_stream(value.device))
        with torch.cuda.stream(self._copies):
            self.values[name][:, frames].copy_(value, non_blocking=True)
        value.record_stream(self._copies)  # its memory is not reused before the copy has read it

    def finish(self) -> dict[str, Tensor]:
        """The stored values, once every copy has been ordered before later work on the current stream."""
        if self._copies is not None:
            torch.cuda.current_stream(self._copies.device).wait_stream(self._copies)
        return self.values


def _host_tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """An empty host tensor, page-locked where the host allows it."""
    try:
        return torch.empty(shape, dtype=dtype, pin_memory=True)
    except RuntimeError as error:  # CUDA's out-of-memory error for host memory
        size = math.prod(shape) * dtype.itemsize / 1e9
        logger.warning(
            "Tap %s (%.1f GB) waits in pageable host memory: it could not be page-locked (%s)", name, size, error
        )
        return torch.empty(shape, dtype=dtype)


@dataclass
class AggregatorOutput:
    kept: dict[str, Tensor]
    """Tap name -> what the tap read, [B, S, ...], on the model's device or, with ``taps_on_host``, on the host."""
    attention: dict[str, Any]
    """The global-attention plan's summary (strategy, graph statistics) and whether it ran by query chunks."""


class Aggregator(nn.Module):
    def __init__(self, config: VGGTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.patch_size = config.patch_size
        self.patch_embed = VisionTransformer(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=dim,
            depth=config.dino_depth,
            num_heads=config.dino_num_heads,
            mlp_ratio=config.dino_mlp_ratio,
            init_values=config.dino_init_values,
            num_register_tokens=config.num_register_tokens,
            interpolate_antialias=config.dino_interpolate_antialias,
            interpolate_offset=config.dino_interpolate_offset,
        )
        # Index 0 along dim 1: the version for frame 0 (the reference); index 1: all other frames.
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, config.num_register_tokens, dim))
        self.patch_start = 1 + config.num_register_tokens

        def make_block() -> Block:
            return Block(
                dim, config.num_heads, config.mlp_ratio, qk_norm=config.qk_norm, init_values=config.aa_init_values
            )

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(config.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(config.depth))
        self.rope = RotaryEmbedding2D(config.rope_freq)
        self.head_dim = dim // config.num_heads

    def special_tokens(self, batch: int, frames: int, first_frame: int = 0) -> Tensor:
        """[B, S, 1 + registers, C] for S frames from ``first_frame`` of the scene on: the scene's frame 0 gets the
        reference versions, the others the shared ones."""
        special = torch.cat((self.camera_token, self.register_token), dim=2)
        references = 1 if first_frame == 0 else 0
        first = special[:, :1].expand(batch, references, -1, -1)
        rest = special[:, 1:].expand(batch, frames - references, -1, -1)
        return torch.cat((first, rest), dim=1)

    def embed_patches(self, images: Tensor, norm_implementation: NormImplementation = "auto") -> Tensor:
        """Images [N, 3, H, W] (float in [0, 1] or uint8) -> normalised DINO patch tokens [N, P, C]."""
        tokens = self.patch_embed(imagenet_normalize(unit_range(images)), norm_implementation)
        return tokens[:, self.patch_embed.num_prefix_tokens :]

    def _frame_tokens(
        self, images: Tensor, frames_chunk: int, first_frame: int, norm_implementation: NormImplementation
    ) -> Tensor:
        """Each frame's tokens [B, S, T, C]: its special tokens, then its patch tokens, which the patch-embed ViT
        writes in place ``frames_chunk`` frames at a time (no list of chunks and no concatenated copy: the token
        stream exists once, not two or three times, while the frames are embedded)."""
        batch, frames = images.shape[:2]
        device = self.camera_token.device
        tokens: Tensor | None = None
        for first in range(0, batch * frames, frames_chunk):
            chunk = images.flatten(0, 1)[first : first + frames_chunk].to(device, non_blocking=True)
            patch_tokens = self.embed_patches(chunk, norm_implementation)
            if tokens is None:
                patches, dim = patch_tokens.shape[1:]
                tokens = patch_tokens.new_empty(batch * frames, self.patch_start + patches, dim)
            tokens[first : first + frames_chunk, self.patch_start :] = patch_tokens
        assert tokens is not None  # a scene has at least one frame
        tokens = tokens.unflatten(0, (batch, frames))
        tokens[:, :, : self.patch_start] = self.special_tokens(batch, frames, first_frame)
        return tokens

    @torch.inference_mode()
    def forward(
        self,
        images: Tensor,
        global_attention: GlobalAttention,
        taps: Mapping[str, Tap],
        *,
        frames_chunk: int = 16,
        timer: StageTimer | None = None,
        norm_implementation: NormImplementation = "auto",
        taps_on_host: bool | Collection[str] = False,
        query_chunks: bool = False,
        first_frame: int = 0,
    ) -> AggregatorOutput:
        """images [B, S, 3, H, W], float in [0, 1] or uint8, on the model's device or on the host (then moved
        a chunk at a time); per-frame work runs on ``frames_chunk`` frames at a time; the blocks' norms run by
        ``norm_implementation``. ``taps_on_host`` keeps what the taps (all, or those named) read in host memory
        instead of the GPU's (``TapStore``). ``query_chunks`` has each global block attend its queries ``frames_chunk``
        frames at a time, where the plan can (``AttentionPlan.attends_query_chunks``). Where a scene's frames are
        shared out between processes, ``images`` are this process's, from the scene's ``first_frame`` on."""
        norms = norm_implementation
        stage = stage_of(timer)
        device = self.camera_token.device
        batch, frames, _, height, width = images.shape
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        with stage("patch_embed"):
            x = self._frame_tokens(images, frames_chunk, first_frame, norms)
        layout = FrameLayout(batch, frames, x.shape[2], self.patch_start)
        with stage("attention_plan"):
            plan = global_attention.prepare(layout, x[:, :, self.patch_start :])
        tokens_per_frame, dim = x.shape[2], x.shape[3]
        x = x.reshape(batch * frames, tokens_per_frame, dim)

        positions = grid_positions(grid_h, grid_w, device) + 1
        positions = torch.cat((positions.new_zeros(self.patch_start, 2), positions))
        rope = self.rope.table(positions, self.head_dim, torch.float32)

        chunks = [slice(start, start + frames_chunk) for start in range(0, batch * frames, frames_chunk)]
        kept = TapStore(device, taps_on_host)
        by_query_chunks = query_chunks and plan.attends_query_chunks
        keys_and_values: list[Tensor] = []  # by query chunks, every global layer's k and v, in the same memory
        for index, (frame_block, global_block) in enumerate(zip(self.frame_blocks, self.global_blocks, strict=True)):
            with stage("frame_blocks"):
                for chunk in chunks:
                    x[chunk] = frame_block(x[chunk], rope, norm_implementation=norms)
            round_taps = {name: tap for name, tap in taps.items() if tap.layer == index}
            read_taps = partial(_read_taps, round_taps, kept, frames, tokens_per_frame, stage) if round_taps else None
            with stage("global_blocks"):
                x = global_block(
                    x.view(batch, frames * tokens_per_frame, dim),
                    rope,
                    partial(plan, layer=index),
                    token_chunk=frames_chunk * tokens_per_frame,
                    read_chunk=read_taps,
                    norm_implementation=norms,
                    attend_query_chunk=partial(_attend_query_frames, plan, index, tokens_per_frame)
                    if by_query_chunks
                    else None,
                    heads_buffers=keys_and_values,
                ).view(batch * frames, tokens_per_frame, dim)
        return AggregatorOutput(kept.finish(), {**plan.summary(), "query_chunks": by_query_chunks})


def _attend_query_frames(
    plan: AttentionPlan, layer: int, tokens_per_frame: int, q: Tensor, k: Tensor, v: Tensor, queries: slice
) -> Tensor:
    """The plan's attention of the queries at token positions ``queries`` (whole frames) over all keys."""
    frames = slice(queries.start // tokens_per_frame, queries.stop // tokens_per_frame)
    return plan(q, k, v, layer, query_frames=frames)


def _read_taps(
    taps: Mapping[str, Tap],
    kept: TapStore,
    scene_frames: int,
    tokens_per_frame: int,
    stage: Callable[[str], Any],
    positions: slice,
    frame_output: Tensor,
    global_output: Tensor,
) -> None:
    """Let each tap read one chunk of a round, whole frames of tokens [B, n * T, C] before (frame output) and
    after (global output) the global block, into ``kept``. The chunk holds n frames of each of the B scenes,
    so a tap reads B * n frames at once."""
    with stage("head_taps"):
        batch = frame_output.shape[0]
        frames = slice(positions.start // tokens_per_frame, positions.stop // tokens_per_frame)
        round_tokens = torch.cat((frame_output, global_output), dim=-1).unflatten(1, (-1, tokens_per_frame))
        for name, tap in taps.items():
            kept.put(name, scene_frames, frames, tap.read(round_tokens.flatten(0, 1)).unflatten(0, (batch, -1)))
