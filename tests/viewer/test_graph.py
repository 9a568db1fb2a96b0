"""Covisibility graph helpers: neighbour lists and the polylines that draw every edge and nothing else."""

from __future__ import annotations

import numpy as np

from vggt_sparse_ns.viewer.graph import edge_walks, neighbour_lists, star_walk

EDGES = np.array([[0, 1], [1, 2], [0, 2], [2, 3], [5, 6]])  # a triangle with a tail, a separate pair, 4 and 7 alone


def test_neighbour_lists_are_symmetric_and_sorted():
    neighbours = neighbour_lists(EDGES, 8)
    assert [part.tolist() for part in neighbours] == [[1, 2], [0, 2], [0, 1, 3], [2], [], [6], [5], []]


def test_edge_walks_traverse_each_edge_once_each_way_and_never_a_non_edge():
    walks = edge_walks(EDGES, 8)
    assert len(walks) == 2  # one per connected component that has edges
    steps = [(int(a), int(b)) for walk in walks for a, b in zip(walk[:-1], walk[1:], strict=True)]
    expected = {(int(i), int(j)) for i, j in EDGES} | {(int(j), int(i)) for i, j in EDGES}
    assert sorted(steps) == sorted(expected)
    assert all(walk[0] == walk[-1] for walk in walks)


def test_edge_walks_of_a_graph_without_edges_are_empty():
    assert edge_walks(np.zeros((0, 2), dtype=np.int64), 3) == []
    assert [part.tolist() for part in neighbour_lists(np.zeros((0, 2), dtype=np.int64), 3)] == [[], [], []]


def test_star_walk_returns_to_the_centre_between_neighbours():
    assert star_walk(4, np.array([1, 7])).tolist() == [4, 1, 4, 7, 4]
