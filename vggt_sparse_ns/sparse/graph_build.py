"""Building a frame graph from per-frame descriptors, in chunks of rows (never an S x S matrix).

Edges: each frame's k most similar frames (cosine similarity), optionally every pair above a
similarity threshold and every pair within a temporal window. Directed by default: a frame
attends to the frames it chose (threshold and window pairs and the bridges between components go
both ways; frames below the minimum degree gain outgoing edges);
with ``symmetric`` every edge goes both ways. Repair: while
the graph has several components, each component is bridged to another through its most
similar outside pair (Boruvka rounds); frames below the minimum degree get their most similar
non-neighbours. Finally frame 0, which defines the world frame, is linked to every frame.
Ties in similarity go to the lower frame index, so a graph is a function of its descriptors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from vggt_sparse_ns.defaults import DEFAULT_NEIGHBORS
from vggt_sparse_ns.sparse.graph import FrameGraph, component_labels

SIMILARITY_CHUNK_ELEMENTS = 1 << 24
"""Rows of the similarity matrix are computed this many entries at a time."""


@dataclass(frozen=True)
class FrameGraphSettings:
    """How a scene's frame graph is built from frame descriptors."""

    neighbors: int = DEFAULT_NEIGHBORS
    """Each frame's k most similar frames become its neighbours."""
    symmetric: bool = False
    """Also let each frame attend to every frame that chose it (more context, but a frame that many others
    choose then attends to all of them: 1.8x the keys at 1,000 frames of random descriptors). Off: each frame
    attends to exactly its own k (plus frame 0 and repairs), so cost per frame is fixed."""
    threshold: float | None = None
    """Also link every pair of frames whose cosine similarity is at least this (None: off)."""
    window: int | None = None
    """Also link frames at most this many indices apart, for video and sequences (None: off)."""
    min_degree: int = 1
    """Frames with fewer similarity neighbours get their most similar other frames up to this many."""

    def __post_init__(self) -> None:
        if self.neighbors < 0 or self.min_degree < 0:
            raise ValueError("neighbors and min_degree must be >= 0")
        if self.window is not None and self.window < 0:
            raise ValueError(f"window must be >= 0 frames, got {self.window}")
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")

    def build(self, descriptors: Tensor, connect_reference: bool = True) -> FrameGraph:
        """The graph of descriptors [S, D] (any scale: they are L2-normalised here), on their device.
        ``connect_reference`` links frame 0, which defines the world frame, to every frame."""
        if descriptors.dim() != 2:
            raise ValueError(f"expected descriptors [frames, dim], got shape {tuple(descriptors.shape)}")
        if not torch.isfinite(descriptors).all():
            raise ValueError("descriptors contain NaN or infinite values; check the images or the descriptor model")
        unit = F.normalize(descriptors.float(), dim=-1)
        frames = unit.shape[0]
        src, dst = _similarity_edges(unit, min(self.neighbors, frames - 1), self.threshold)
        if self.window:
            window_src, window_dst = _window_edges(frames, self.window, unit.device)
            src, dst = torch.cat((src, window_src, window_dst)), torch.cat((dst, window_dst, window_src))
        labels = component_labels(src, dst, frames)
        components = int(labels.unique().numel())
        src, dst = _bridge_components(unit, src, dst, labels)
        src, dst = _raise_degrees(unit, src, dst, min(self.min_degree, frames - 1), self.symmetric)
        graph = FrameGraph.from_edges(src, dst, frames, components, self.symmetric)
        return graph.with_reference_edges() if connect_reference else graph


def _row_chunks(rows: int, columns: int) -> Iterator[slice]:
    """Slices of ``rows`` such that each chunk of a [rows, columns] matrix stays bounded."""
    step = max(1, SIMILARITY_CHUNK_ELEMENTS // max(columns, 1))
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


def _similarities(unit: Tensor, rows: slice) -> Tensor:
    """Cosine similarities [R, S] of the given rows, with each frame's similarity to itself at -inf."""
    scores = unit[rows] @ unit.T
    own = torch.arange(rows.start, rows.stop, device=unit.device)
    scores[torch.arange(len(own), device=unit.device), own] = float("-inf")
    return scores


def top_per_row(scores: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """(row, column) pairs of the counts[r] largest finite entries of each row of scores [R, S],
    ties to the lower column. torch.topk does not promise which of equal values it returns, so
    rows whose k-th and (k+1)-th values are equal are resolved exactly, by column order."""
    largest = int(counts.max()) if counts.numel() else 0
    if largest == 0:
        empty = torch.empty(0, dtype=torch.long, device=scores.device)
        return empty, empty
    width = scores.shape[1]
    take = min(largest + 1, width)
    values, columns = scores.topk(take, dim=1)
    kth = values.gather(1, (counts.clamp(min=1, max=take) - 1)[:, None]).squeeze(1)
    following = values.gather(1, counts.clamp(max=take - 1)[:, None]).squeeze(1)
    tied = (counts > 0) & (counts < width) & (kth == following) & torch.isfinite(kth)
    chosen = (torch.arange(take, device=scores.device) < counts[:, None]) & torch.isfinite(values) & ~tied[:, None]
    rows, ranks = chosen.nonzero(as_tuple=True)
    tied_rows = tied.nonzero().flatten()
    if tied_rows.numel() == 0:
        return rows, columns[rows, ranks]
    tied_scores, tied_kth = scores[tied_rows], kth[tied_rows, None]
    above = tied_scores > tied_kth
    missing = counts[tied_rows, None] - above.sum(1, keepdim=True)
    ties = tied_scores == tied_kth
    tied_row, tied_column = (above | (ties & (ties.cumsum(1) <= missing))).nonzero(as_tuple=True)
    return torch.cat((rows, tied_rows[tied_row])), torch.cat((columns[rows, ranks], tied_column))


def _similarity_edges(unit: Tensor, neighbors: int, threshold: float | None) -> tuple[Tensor, Tensor]:
    frames = unit.shape[0]
    sources, targets = [], []
    for rows in _row_chunks(frames, frames):
        scores = _similarities(unit, rows)
        row, col = top_per_row(scores, torch.full((scores.shape[0],), neighbors, device=unit.device))
        sources.append(row + rows.start)
        targets.append(col)
        if threshold is not None:
            row, col = (scores >= threshold).nonzero(as_tuple=True)
            sources.append(row + rows.start)
            targets.append(col)
    empty = torch.empty(0, dtype=torch.long, device=unit.device)
    return torch.cat(sources) if sources else empty, torch.cat(targets) if targets else empty


def _window_edges(frames: int, window: int, device: torch.device) -> tuple[Tensor, Tensor]:
    offsets = torch.arange(1, window + 1, device=device)
    src = torch.arange(frames, device=device)[:, None].expand(-1, window)
    dst = src + offsets
    keep = dst < frames
    return src[keep], dst[keep]


def _bridge_components(unit: Tensor, src: Tensor, dst: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boruvka rounds: every component gains an edge through its most similar pair with another
    component (lowest frame index on ties), until one component remains."""
    frames = unit.shape[0]
    while int(labels.unique().numel()) > 1:
        best_score = torch.empty(frames, device=unit.device)
        best_partner = torch.empty(frames, dtype=torch.long, device=unit.device)
        for rows in _row_chunks(frames, frames):
            scores = _similarities(unit, rows)
            scores[labels[rows][:, None] == labels[None, :]] = float("-inf")
            best_score[rows], best_partner[rows] = scores.max(dim=1)
        component_best = torch.full((frames,), float("-inf"), device=unit.device)
        component_best = component_best.scatter_reduce(0, labels, best_score, reduce="amax")
        frame_ids = torch.arange(frames, device=unit.device)
        is_best = best_score == component_best[labels]
        candidates = torch.where(is_best, frame_ids, torch.full_like(frame_ids, frames))
        chosen = torch.full((frames,), frames, device=unit.device).scatter_reduce(0, labels, candidates, reduce="amin")
        bridge = chosen[chosen < frames]
        partner = best_partner[bridge]
        src, dst = torch.cat((src, bridge, partner)), torch.cat((dst, partner, bridge))
        labels = component_labels(src, dst, frames)
    return src, dst


def _raise_degrees(unit: Tensor, src: Tensor, dst: Tensor, min_degree: int, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Give each frame with fewer than min_degree neighbours its most similar non-neighbours."""
    frames = unit.shape[0]
    if min_degree <= 0:
        return src, dst
    graph = FrameGraph.from_edges(src, dst, frames, symmetric=symmetric)
    deficit = (min_degree - graph.degrees()).clamp(min=0)
    needy = deficit.nonzero().flatten()
    adjacency_src, adjacency_dst = graph.edges()
    added_src, added_dst = [src], [dst]
    for rows in _row_chunks(needy.numel(), frames):
        chunk = needy[rows]
        row_of_frame = torch.full((frames,), -1, dtype=torch.long, device=unit.device)
        row_of_frame[chunk] = torch.arange(chunk.numel(), device=unit.device)
        scores = unit[chunk] @ unit.T
        scores[torch.arange(chunk.numel(), device=unit.device), chunk] = float("-inf")
        in_chunk = row_of_frame[adjacency_src] >= 0
        scores[row_of_frame[adjacency_src[in_chunk]], adjacency_dst[in_chunk]] = float("-inf")
        row, col = top_per_row(scores, deficit[chunk])
        added_src.append(chunk[row])
        added_dst.append(col)
    return torch.cat(added_src), torch.cat(added_dst)
