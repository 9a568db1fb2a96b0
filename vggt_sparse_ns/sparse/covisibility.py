"""Covisibility attention: each frame attends only to the frames its frame graph links it to.

A query frame's tokens attend to all tokens of itself, of frame 0 and of its graph neighbours, and
with ``all_special_tokens`` also to the special tokens (camera + registers) of every frame. Query frames are
grouped by degree, so every query frame of a chunk gathers the same number of key frames and
no padding or mask is needed: each chunk is one plain SDPA call (FlashAttention/cuDNN on CUDA,
native kernels on MPS and CPU). Memory is bounded by the gathered keys of one chunk; cost is
O(S * (k + 1)) frame pairs plus the S^2 * special-token pairs (none with all_special_tokens off).

Three implementations run it (``COVISIBILITY_ATTENTION``, fastest first): on CUDA one kernel that reads each
listed frame's keys where they lie (layers/kernels/frame_list_attention.py: gluon, warp-specialised on Hopper
without the shared special tokens; triton otherwise), which saves the gathers' copies; gather, the plain-PyTorch
path above, is the reference and runs everywhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vggt_sparse_ns.layers.implementations import Implementation, Operation, runs_everywhere
from vggt_sparse_ns.layers.kernels import DeviceCapabilities, triton_reasons
from vggt_sparse_ns.layers.kernels.frame_list_attention import (
    FrameLists,
    frame_list_attention,
    gluon_not_supported_reasons,
    triton_layout_reasons,
)
from vggt_sparse_ns.sparse.base import FrameLayout
from vggt_sparse_ns.sparse.graph import FrameGraph
from vggt_sparse_ns.sparse.graph_source import FrameGraphSource


@dataclass(frozen=True)
class GatherChunk:
    """Query frames that attend to the same number of frames, with the frames they attend to."""

    query_frames: Tensor
    """[c] frame indices."""
    key_frames: Tensor
    """[c, d + 1]: each query frame itself, then its d neighbours (frame 0 among them)."""


def gather_chunks(
    graph: FrameGraph, layout: FrameLayout, max_gathered_frames: int, all_special_tokens: bool = True
) -> list[GatherChunk]:
    """Query frames grouped by degree (then index), each group split so that a chunk gathers at
    most ``max_gathered_frames`` frames' worth of key tokens."""
    attended = graph.with_reference_edges()
    degrees = attended.degrees()
    frames_by_degree = torch.sort(degrees, stable=True).indices
    group_degrees, group_sizes = torch.unique_consecutive(degrees[frames_by_degree], return_counts=True)
    shared_tokens = layout.frames * layout.special_tokens if all_special_tokens else 0
    frame_keys = layout.patch_tokens if all_special_tokens else layout.tokens_per_frame
    budget = max_gathered_frames * layout.tokens_per_frame
    chunks = []
    for group, degree in zip(frames_by_degree.split(group_sizes.tolist()), group_degrees.tolist(), strict=True):
        offsets = torch.arange(degree, device=group.device)
        neighbours = attended.indices[attended.indptr[group][:, None] + offsets]
        key_frames = torch.cat((group[:, None], neighbours), dim=1)
        per_chunk = max(1, budget // (shared_tokens + (degree + 1) * frame_keys))
        chunks += [GatherChunk(q, k) for q, k in zip(group.split(per_chunk), key_frames.split(per_chunk), strict=True)]
    return chunks


def _within(chunks: list[GatherChunk], query_frames: slice) -> list[GatherChunk]:
    """The chunks' query frames in the range ``query_frames``, with their key frames (empty chunks dropped)."""
    kept = []
    for chunk in chunks:
        inside = (chunk.query_frames >= query_frames.start) & (chunk.query_frames < query_frames.stop)
        if bool(inside.all()):
            kept.append(chunk)
        elif bool(inside.any()):
            kept.append(GatherChunk(chunk.query_frames[inside], chunk.key_frames[inside]))
    return kept


def attended_frames(graph: FrameGraph) -> tuple[Tensor, Tensor]:
    """CSR (indptr, indices) of the frames whose patch tokens each frame attends to: itself, then
    its neighbours with frame 0 among them (ascending)."""
    attended = graph.with_reference_edges()
    src, dst = attended.edges()
    frames = torch.arange(graph.frames, device=graph.device)
    rows, columns = torch.cat((frames, src)), torch.cat((frames, dst))
    by_row = torch.sort(rows, stable=True).indices  # stable: each frame itself first, then its sorted row
    counts = attended.degrees() + 1
    return torch.cat((counts.new_zeros(1), counts.cumsum(0))), columns[by_row]


def _gather(x: Tensor, positions: Tensor) -> Tensor:
    """Tokens of one scene x [H, L, D] at positions [c, n] -> [c, H, n, D] (one copy)."""
    return x.index_select(1, positions.flatten()).unflatten(1, tuple(positions.shape)).transpose(0, 1)


@dataclass(frozen=True)
class CovisibilityInputs:
    """One scene's q, k, v [heads, S * T, head_dim], the frames' special tokens, whether every frame's special
    tokens are attended, and the capabilities of the device."""

    q: Tensor
    k: Tensor
    v: Tensor
    special_tokens: int
    all_special_tokens: bool
    capabilities: DeviceCapabilities


def _gluon_reasons(inputs: CovisibilityInputs) -> list[str]:
    return gluon_not_supported_reasons(inputs.q, inputs.k, inputs.v, inputs.all_special_tokens, inputs.capabilities)


def _triton_reasons(inputs: CovisibilityInputs) -> list[str]:
    layout = triton_layout_reasons(inputs.q, inputs.k, inputs.v, inputs.special_tokens, inputs.all_special_tokens)
    return triton_reasons(inputs.capabilities, inputs.q.dtype) + layout


PlanRun = Callable[..., Tensor]
"""(plan, q, k, v, frames=None) -> the output of the queries in q: of all frames, or of the range ``frames``."""

COVISIBILITY_ATTENTION = Operation[CovisibilityInputs, PlanRun](
    "covisibility attention",
    (
        Implementation(
            "gluon", lambda plan, *qkv, frames=None: plan.attend_in_place(*qkv, frames, "gluon"), _gluon_reasons
        ),
        Implementation(
            "triton", lambda plan, *qkv, frames=None: plan.attend_in_place(*qkv, frames, "triton"), _triton_reasons
        ),
        Implementation("gather", lambda plan, *qkv, frames=None: plan.attend_gathered(*qkv, frames), runs_everywhere),
    ),
)
"""The implementations of covisibility attention, fastest first (``CovisibilityAttention.implementation`` says
what each is)."""

CovisibilityImplementation = Literal["auto", "gluon", "triton", "gather"]


class _CovisibilityPlan:
    def __init__(self, strategy: CovisibilityAttention, layout: FrameLayout, graphs: list[FrameGraph]) -> None:
        self.strategy = strategy
        self.layout = layout
        self.graphs = graphs
        self.chosen: Implementation | None = None
        self.attends_query_chunks = True
        self.by_query_range: dict[tuple[str, int, int], Any] = {}
        """The frame lists and gather chunks of each range of query frames asked for (``lists_of``, ``chunks_of``)."""

    @functools.cached_property
    def scene_lists(self) -> list[FrameLists]:
        """Per scene, the frames each frame attends to, for the in-place kernels."""
        return [FrameLists.from_csr(*attended_frames(graph)) for graph in self.graphs]

    @functools.cached_property
    def scene_chunks(self) -> list[list[GatherChunk]]:
        """Per scene, the degree-grouped chunks of the gather path."""
        strategy = self.strategy
        return [
            gather_chunks(graph, self.layout, strategy.max_gathered_frames, strategy.all_special_tokens)
            for graph in self.graphs
        ]

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, layer: int, query_frames: slice | None = None) -> Tensor:
        """Chooses the implementation once, at the first layer (every global layer's q, k, v alike), and runs it
        for all query frames or for the range ``query_frames`` (q then holds those frames' queries only)."""
        if self.chosen is None:
            inputs = CovisibilityInputs(
                q[0], k[0], v[0], self.layout.special_tokens, self.strategy.all_special_tokens,
                DeviceCapabilities.of(q.device),
            )  # fmt: skip
            self.chosen = COVISIBILITY_ATTENTION.choose(self.strategy.implementation, inputs)
        return self.chosen.run(self, q, k, v, frames=query_frames)

    def lists_of(self, query_frames: slice) -> list[FrameLists]:
        """Per scene, the frame lists of the query frames ``query_frames`` (made once: every layer asks again)."""
        key = ("lists", query_frames.start, query_frames.stop)
        if key not in self.by_query_range:
            self.by_query_range[key] = [lists.query_range(*key[1:]) for lists in self.scene_lists]
        return self.by_query_range[key]

    def chunks_of(self, query_frames: slice) -> list[list[GatherChunk]]:
        """Per scene, the gather chunks of the query frames ``query_frames`` (made once: every layer asks again)."""
        key = ("chunks", query_frames.start, query_frames.stop)
        if key not in self.by_query_range:
            self.by_query_range[key] = [_within(chunks, query_frames) for chunks in self.scene_chunks]
        return self.by_query_range[key]

    def attend_in_place(
        self, q: Tensor, k: Tensor, v: Tensor, query_frames: slice | None, implementation: Literal["gluon", "triton"]
    ) -> Tensor:
        out = torch.empty_like(q)
        tokens, special = self.layout.tokens_per_frame, self.layout.special_tokens
        for scene, lists in enumerate(self.scene_lists if query_frames is None else self.lists_of(query_frames)):
            frame_list_attention(
                q[scene], k[scene], v[scene], lists, tokens, special,
                self.strategy.all_special_tokens, out=out[scene], implementation=implementation,
            )  # fmt: skip
        return out

    @functools.cached_property
    def gather_positions(self) -> tuple[Tensor, Tensor, Tensor]:
        """Token offsets within a frame of its queries and of the keys taken from each attended frame, and
        the positions of the keys every query frame shares (all special tokens, or none)."""
        tokens, special = self.layout.tokens_per_frame, self.layout.special_tokens
        all_special = self.strategy.all_special_tokens
        device = self.graphs[0].device
        frame_starts = torch.arange(self.layout.frames, device=device)[:, None] * tokens
        shared = (frame_starts + torch.arange(special, device=device)).flatten()
        return (
            torch.arange(tokens, device=device),
            torch.arange(special if all_special else 0, tokens, device=device),
            shared if all_special else shared[:0],
        )

    def attend_gathered(self, q: Tensor, k: Tensor, v: Tensor, query_frames: slice | None) -> Tensor:
        out = torch.empty_like(q)
        tokens = self.layout.tokens_per_frame
        first = 0 if query_frames is None else query_frames.start
        frame_tokens, frame_key_offsets, shared_positions = self.gather_positions
        for scene, chunks in enumerate(self.scene_chunks if query_frames is None else self.chunks_of(query_frames)):
            for chunk in chunks:
                count = chunk.query_frames.numel()
                query_positions = ((chunk.query_frames[:, None] - first) * tokens + frame_tokens).flatten()
                frame_positions = (chunk.key_frames[:, :, None] * tokens + frame_key_offsets).flatten(1)
                key_positions = torch.cat((shared_positions.expand(count, -1), frame_positions), dim=1)
                attended = F.scaled_dot_product_attention(
                    _gather(q[scene], query_positions.view(count, tokens)),
                    _gather(k[scene], key_positions),
                    _gather(v[scene], key_positions),
                )
                out[scene].index_copy_(1, query_positions, attended.transpose(0, 1).flatten(1, 2))
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "strategy": "covisibility",
            "implementation": self.chosen.name if self.chosen else None,
            "all_special_tokens": self.strategy.all_special_tokens,
            "max_gathered_frames": self.strategy.max_gathered_frames,
            **self.strategy.describe(),
            "graphs": [graph.with_reference_edges().stats() for graph in self.graphs],
        }


@dataclass(frozen=True)
class CovisibilityAttention(FrameGraphSource):
    """Global attention over the frames each frame can see: O(S * k) instead of O(S^2).

    Each frame attends to the tokens of itself, of frame 0 and of its frame-graph neighbours (and
    optionally to every frame's special tokens). With a complete graph it equals dense attention. The
    graph comes, in this order, from ``graph``, from ``descriptors`` (e.g. MegaLoc's), or from the
    model's own pooled patch tokens; ``neighbors`` (k) and the other graph settings are fields of
    ``FrameGraphSettings``. ``prepare`` builds one plan per batch of scenes, which the global blocks call
    as ``plan(q, k, v, layer)``; ``plan.summary()`` names the graph and the implementation that ran.

    Example:
        >>> model = load_pretrained(device="cuda")  # the default checkpoint: VGGT-1B from the hub
        >>> predictions = model(images.cuda(), CovisibilityAttention(neighbors=16))
        >>> predictions["attention"]["implementation"]  # on a Hopper GPU
        'gluon'
    """

    all_special_tokens: bool = False
    """Also attend to every frame's camera and register tokens (global context at a cost of S^2 x 5 keys: a fifth
    of the keys at 1,000 frames, half at 4,096). Off: only those of the attended frames, so cost is O(S * k)."""
    implementation: CovisibilityImplementation = "auto"
    """auto: the first of gluon, triton, gather that can run. gluon: the warp-specialised kernel reading the listed frames' keys in place (Hopper GPUs, bfloat16 or float16, head dim 64, without all_special_tokens, Triton 3.6+ with Gluon). triton: the Triton kernel reading them in place (CUDA, bfloat16 or float16, Triton installed). gather: listed frames' keys copied into batches for PyTorch's SDPA (runs everywhere; the reference)."""
    max_gathered_frames: int = 512
    """gather implementation: keys and values of at most this many frames are gathered at once (bounds memory; at least one query frame per chunk)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        COVISIBILITY_ATTENTION.check_choice(self.implementation)
        if self.max_gathered_frames < 1:
            raise ValueError(f"max_gathered_frames must be >= 1, got {self.max_gathered_frames}")

    def prepare(self, layout: FrameLayout, patch_tokens: Tensor) -> _CovisibilityPlan:
        return _CovisibilityPlan(self, layout, self.graphs(patch_tokens))
