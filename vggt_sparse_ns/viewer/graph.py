"""Covisibility-graph helpers: neighbour lists and edge sets drawn as a few polylines.

viser 0.2.7 has no batched line-segment primitive; one line object per edge would cost thousands of
scene nodes. Instead each connected component is drawn as one polyline that walks every edge twice
(there and back): doubling the edges makes every degree even, so such a closed walk (an Euler circuit)
always exists and never steps along a pair of cameras that is not an edge.
"""

from __future__ import annotations

import numpy as np


def neighbour_lists(edges: np.ndarray, count: int) -> list[np.ndarray]:
    """For each of `count` frames, the sorted indices of the frames it shares an edge with."""
    both_ways = np.concatenate([edges, edges[:, ::-1]]) if len(edges) else np.zeros((0, 2), dtype=np.int64)
    order = np.lexsort((both_ways[:, 1], both_ways[:, 0]))
    both_ways = both_ways[order]
    splits = np.searchsorted(both_ways[:, 0], np.arange(1, count))
    return [np.unique(part) for part in np.split(both_ways[:, 1], splits)]


def edge_walks(edges: np.ndarray, count: int) -> list[np.ndarray]:
    """Vertex sequences, one per connected component with edges, that traverse each edge once in each direction."""
    neighbours = neighbour_lists(edges, count)
    remaining = [list(reversed(part.tolist())) for part in neighbours]
    walks = []
    for start in range(count):
        if not remaining[start]:
            continue
        # Hierholzer's algorithm on the doubled graph: each directed half-edge is used exactly once.
        stack, walk = [start], []
        while stack:
            vertex = stack[-1]
            if remaining[vertex]:
                stack.append(remaining[vertex].pop())
            else:
                walk.append(stack.pop())
        walks.append(np.asarray(walk[::-1], dtype=np.int64))
    return walks


def star_walk(centre: int, neighbours: np.ndarray) -> np.ndarray:
    """A walk centre -> n1 -> centre -> n2 -> ... -> centre covering the edges of one frame."""
    walk = np.full(2 * len(neighbours) + 1, centre, dtype=np.int64)
    walk[1::2] = neighbours
    return walk
