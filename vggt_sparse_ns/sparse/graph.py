"""The frame graph: which frames' patch tokens each frame's tokens may attend to.

A graph over the S frames of one scene, stored as CSR arrays (``indptr`` [S+1], ``indices``,
each row sorted, no self loops) on the device of whatever built it: row f lists the frames f
attends to. Symmetric graphs hold every edge in both rows; directed ones (what the frame-graph
settings build by default) let a frame attend to a frame that does not attend back, so each row holds
only what that frame chose.
CSR keeps memory O(S + E) even when frame 0, the reference frame, is connected to every frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def component_labels(src: Tensor, dst: Tensor, frames: int) -> Tensor:
    """Label [S] of each frame's connected component (its smallest frame index), for the
    undirected edges src[e] - dst[e]. Min-label hooking with pointer jumping: O(E) work per
    round and O(log S) rounds on typical graphs, never an S x S matrix."""
    labels = torch.arange(frames, device=src.device)
    if src.numel() == 0:
        return labels
    both_src = torch.cat((src, dst))
    both_dst = torch.cat((dst, src))
    while True:
        hooked = labels.scatter_reduce(0, both_src, labels[both_dst], reduce="amin")
        # A label is a frame of the same component; following labels to their fixed point
        # shortcuts long chains (a path of S frames takes O(log S) rounds, not S).
        while True:
            jumped = hooked[hooked]
            if torch.equal(jumped, hooked):
                break
            hooked = jumped
        if torch.equal(hooked, labels):
            return labels
        labels = hooked


@dataclass(frozen=True, eq=False)
class FrameGraph:
    """Neighbour structure over the frames of one scene (CSR, sorted rows, no self loops)."""

    indptr: Tensor
    """[S + 1] int64: row f's neighbours (the frames f attends to) are indices[indptr[f]:indptr[f + 1]]."""
    indices: Tensor
    """int64 neighbour frame indices, ascending within each row."""
    components_before_repair: int = 1
    """Connected components of the similarity edges before connectivity repair (1 when not built from descriptors)."""
    symmetric: bool = True
    """Whether every edge is held in both rows (f attends to g exactly when g attends to f)."""

    @property
    def frames(self) -> int:
        return self.indptr.numel() - 1

    @property
    def device(self) -> torch.device:
        return self.indptr.device

    @property
    def num_edges(self) -> int:
        """Frame pairs linked one way or both (a symmetric graph holds each in both rows)."""
        if self.symmetric:
            return self.indices.numel() // 2
        return int(self.pairs().shape[0])

    def pairs(self) -> Tensor:
        """[E, 2] frame pairs (i < j, sorted) linked one way or both."""
        src, dst = self.edges()
        return torch.unique(torch.stack((torch.minimum(src, dst), torch.maximum(src, dst)), dim=1), dim=0)

    def degrees(self) -> Tensor:
        """[S] number of neighbours of each frame."""
        return self.indptr[1:] - self.indptr[:-1]

    def edges(self) -> tuple[Tensor, Tensor]:
        """Directed edge arrays (src, dst) of every row entry (both directions of a symmetric edge), sorted by (src, dst)."""
        src = torch.repeat_interleave(torch.arange(self.frames, device=self.device), self.degrees())
        return src, self.indices

    @classmethod
    def from_edges(
        cls, src: Tensor, dst: Tensor, frames: int, components_before_repair: int = 1, symmetric: bool = True
    ) -> FrameGraph:
        """The graph of the edges src[e] -> dst[e] (frame src attends to frame dst), with their symmetric
        closure when ``symmetric``; self loops and repeats are dropped."""
        src, dst = src.long().flatten(), dst.long().flatten()
        if src.shape != dst.shape:
            raise ValueError(f"edge arrays differ in length: {src.numel()} sources, {dst.numel()} destinations")
        if src.numel() and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= frames):
            raise ValueError(f"edge endpoints must be frame indices in [0, {frames}); got some outside")
        if symmetric:
            src, dst = torch.cat((src, dst)), torch.cat((dst, src))
        keys = torch.unique((src * frames + dst)[src != dst])
        row, col = keys // frames, keys % frames
        counts = torch.bincount(row, minlength=frames)
        indptr = torch.cat((counts.new_zeros(1), counts.cumsum(0)))
        return cls(indptr, col, components_before_repair, symmetric)

    @classmethod
    def complete(cls, frames: int, device: torch.device | str | None = None) -> FrameGraph:
        """Every frame connected to every other: covisibility attention then equals dense attention."""
        pairs = torch.triu_indices(frames, frames, offset=1, device=device)
        return cls.from_edges(pairs[0], pairs[1], frames)

    @classmethod
    def from_neighbor_lists(
        cls,
        lists: Sequence[Sequence[int]],
        frames: int,
        connect_reference: bool = True,
        device: torch.device | str | None = None,
        symmetric: bool = True,
    ) -> FrameGraph:
        """lists[f] holds frames that f sees; the graph is these edges (self entries ignored), closed
        symmetrically when ``symmetric``, plus edges between frame 0 and every frame when ``connect_reference``."""
        if len(lists) != frames:
            raise ValueError(f"expected one neighbour list per frame ({frames}), got {len(lists)} lists")
        src = [frame for frame, neighbours in enumerate(lists) for _ in neighbours]
        dst = [int(neighbour) for neighbours in lists for neighbour in neighbours]
        graph = cls.from_edges(
            torch.tensor(src, dtype=torch.long, device=device),
            torch.tensor(dst, dtype=torch.long, device=device),
            frames,
            symmetric=symmetric,
        )
        return graph.with_reference_edges() if connect_reference else graph

    def has_reference_edges(self) -> bool:
        """Whether frame 0 (the world frame) and every other frame attend to each other. Rows are sorted
        without self loops, so a row holds frame 0 exactly when it starts with it: O(S), not O(E)."""
        if self.frames < 2:
            return True
        others = self.degrees()[1:]
        if self.indices.numel() == 0 or int(self.indptr[1]) != self.frames - 1 or bool((others == 0).any()):
            return False
        return bool((self.indices[self.indptr[1:-1]] == 0).all())

    def with_reference_edges(self) -> FrameGraph:
        """The same graph plus edges both ways between frame 0 (the world frame) and every other frame;
        the graph itself when it already holds them, so consumers may ask for it freely."""
        if self.has_reference_edges():
            return self
        src, dst = self.edges()
        others = torch.arange(1, self.frames, device=self.device)
        zeros = torch.zeros_like(others)
        return FrameGraph.from_edges(
            torch.cat((src, zeros, others)),
            torch.cat((dst, others, zeros)),
            self.frames,
            self.components_before_repair,
            self.symmetric,
        )

    def neighbor_lists(self) -> list[list[int]]:
        """Python lists of each frame's neighbours (ascending)."""
        bounds = self.indptr.tolist()
        flat = self.indices.tolist()
        return [flat[bounds[frame] : bounds[frame + 1]] for frame in range(self.frames)]

    def adjacency(self) -> Tensor:
        """Dense [S, S] boolean adjacency (no self loops): for small S and reference checks."""
        dense = torch.zeros(self.frames, self.frames, dtype=torch.bool, device=self.device)
        src, dst = self.edges()
        dense[src, dst] = True
        return dense

    def component_count(self) -> int:
        src, dst = self.edges()
        return int(component_labels(src, dst, self.frames).unique().numel())

    def to(self, device: torch.device | str) -> FrameGraph:
        return FrameGraph(
            self.indptr.to(device), self.indices.to(device), self.components_before_repair, self.symmetric
        )

    def stats(self) -> dict[str, Any]:
        """Frames, edges, degree min/mean/max (row lengths), components before repair, whether the graph is
        symmetric, and the fraction of dense attention's patch cost that covisibility attention pays:
        (S + row entries) / S^2 frame pairs (each frame with itself and with each frame it attends to)."""
        degrees = self.degrees().float()
        frames = self.frames
        return {
            "frames": frames,
            "edges": self.num_edges,
            "degree_min": int(degrees.min()) if frames else 0,
            "degree_mean": float(degrees.mean()) if frames else 0.0,
            "degree_max": int(degrees.max()) if frames else 0,
            "components_before_repair": self.components_before_repair,
            "symmetric": self.symmetric,
            "dense_cost_fraction": (frames + self.indices.numel()) / frames**2 if frames else 0.0,
        }
