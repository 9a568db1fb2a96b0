"""FrameGraph: symmetric neighbour structure, construction from descriptors, repair, statistics."""

from __future__ import annotations

import pytest
import torch

from vggt_sparse_ns.sparse import FrameGraph, graph_build
from vggt_sparse_ns.sparse.graph import component_labels


def graph_from_descriptors(
    descriptors: torch.Tensor,
    neighbors: int = 16,
    threshold: float | None = None,
    window: int | None = None,
    min_degree: int = 1,
    connect_reference: bool = True,
    symmetric: bool = False,
) -> FrameGraph:
    """k-nearest-neighbour graph by cosine similarity of descriptors [S, D] (graph_build.FrameGraphSettings)."""
    settings = graph_build.FrameGraphSettings(neighbors, symmetric, threshold, window, min_degree)
    return settings.build(descriptors, connect_reference)


def random_descriptors(frames: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(frames, dim, generator=torch.Generator().manual_seed(seed))


def clustered_descriptors(clusters: int, per_cluster: int, seed: int = 0) -> torch.Tensor:
    """Clusters along orthogonal axes, with a little noise: no kNN edge crosses clusters."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.eye(clusters).repeat_interleave(per_cluster, dim=0)
    return centres + 0.01 * torch.randn(clusters * per_cluster, clusters, generator=generator)


def test_a_symmetric_graph_from_descriptors_has_no_self_loops():
    adjacency = graph_from_descriptors(random_descriptors(40), neighbors=3, symmetric=True).adjacency()
    assert torch.equal(adjacency, adjacency.T)
    assert not adjacency.diagonal().any()


def test_a_graph_from_descriptors_is_directed_by_default():
    graph = graph_from_descriptors(random_descriptors(40), neighbors=3, connect_reference=False)
    adjacency = graph.adjacency()
    assert not graph.symmetric and not torch.equal(adjacency, adjacency.T)
    assert not adjacency.diagonal().any()


def test_frame_zero_is_linked_to_every_frame():
    adjacency = graph_from_descriptors(random_descriptors(25), neighbors=2).adjacency()
    assert adjacency[0, 1:].all()


def test_nearest_neighbours_match_a_brute_force_search():
    descriptors = random_descriptors(30)
    directed = graph_from_descriptors(descriptors, neighbors=3, min_degree=0, connect_reference=False)
    symmetric = graph_from_descriptors(descriptors, neighbors=3, min_degree=0, connect_reference=False, symmetric=True)
    unit = torch.nn.functional.normalize(descriptors, dim=-1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)
    expected = torch.zeros(30, 30, dtype=torch.bool)
    expected.scatter_(1, similarity.argsort(dim=1, descending=True)[:, :3], True)
    assert torch.equal(directed.adjacency(), expected)
    assert torch.equal(symmetric.adjacency(), expected | expected.T)


def test_chunked_similarity_search_gives_the_same_graph(monkeypatch):
    descriptors = random_descriptors(50)
    whole = graph_from_descriptors(descriptors, neighbors=4, threshold=0.5)
    monkeypatch.setattr(graph_build, "SIMILARITY_CHUNK_ELEMENTS", 120)
    chunked = graph_from_descriptors(descriptors, neighbors=4, threshold=0.5)
    assert torch.equal(whole.adjacency(), chunked.adjacency())


def test_equal_similarities_are_broken_towards_lower_frame_indices():
    graph = graph_from_descriptors(torch.ones(6, 4), neighbors=2, min_degree=0, connect_reference=False)
    # Every frame's two "most similar" are the lowest other indices: 0 -> {1, 2}, 1 -> {0, 2}, others -> {0, 1}.
    assert graph.neighbor_lists() == [[1, 2], [0, 2], [0, 1], [0, 1], [0, 1], [0, 1]]


def test_top_per_row_picks_the_largest_finite_entries_with_ties_to_lower_columns():
    inf = float("inf")
    scores = torch.tensor(
        [
            [0.1, 0.9, 0.5, 0.7],  # distinct: 2 largest are columns 1, 3
            [0.5, 0.5, 0.9, 0.5],  # tied at the boundary: 2, then the lowest tied column 0
            [-inf, 0.3, -inf, -inf],  # only one finite entry
            [0.2, 0.1, 0.3, 0.4],  # count 0
        ]
    )
    rows, columns = graph_build.top_per_row(scores, torch.tensor([2, 2, 3, 0]))
    chosen = sorted(zip(rows.tolist(), columns.tolist(), strict=True))
    assert chosen == [(0, 1), (0, 3), (1, 0), (1, 2), (2, 1)]


def test_construction_is_deterministic():
    descriptors = random_descriptors(60)
    first = graph_from_descriptors(descriptors, neighbors=5, window=2)
    second = graph_from_descriptors(descriptors.clone(), neighbors=5, window=2)
    assert torch.equal(first.indptr, second.indptr) and torch.equal(first.indices, second.indices)


def test_every_frame_reaches_the_minimum_degree():
    graph = graph_from_descriptors(random_descriptors(20), neighbors=0, min_degree=3, connect_reference=False)
    assert int(graph.degrees().min()) >= 3


def test_disconnected_clusters_are_bridged_until_connected():
    graph = graph_from_descriptors(clustered_descriptors(3, 5), neighbors=2, connect_reference=False)
    assert graph.components_before_repair == 3
    assert graph.component_count() == 1


def test_a_bridge_joins_the_most_similar_pair_of_two_clusters():
    descriptors = clustered_descriptors(2, 4)
    descriptors[2] = torch.tensor([1.0, 0.5])  # cluster 0's frame leaning most towards cluster 1
    descriptors[6] = torch.tensor([0.5, 1.0])  # and cluster 1's frame leaning most towards cluster 0
    graph = graph_from_descriptors(descriptors, neighbors=1, connect_reference=False)
    adjacency = graph.adjacency()
    assert graph.components_before_repair == 2
    assert adjacency[2, 6]
    assert not adjacency[:4, 4:].flatten().sum() > 1


def test_window_links_exactly_the_frames_within_it():
    graph = graph_from_descriptors(random_descriptors(10), neighbors=0, window=2, min_degree=0, connect_reference=False)
    index = torch.arange(10)
    distance = (index[:, None] - index[None, :]).abs()
    assert torch.equal(graph.adjacency(), (distance <= 2) & (distance > 0))


def test_threshold_links_the_pairs_at_least_that_similar_plus_one_bridge_per_extra_component():
    descriptors = random_descriptors(15, dim=3)
    graph = graph_from_descriptors(descriptors, neighbors=0, threshold=0.6, min_degree=0, connect_reference=False)
    unit = torch.nn.functional.normalize(descriptors, dim=-1)
    expected = (unit @ unit.T >= 0.6) & ~torch.eye(15, dtype=torch.bool)
    adjacency = graph.adjacency()
    assert graph.components_before_repair > 1
    assert (adjacency | ~expected).all()
    bridges = (adjacency & ~expected).sum() // 2
    assert bridges == graph.components_before_repair - 1


def test_neighbors_beyond_the_frame_count_give_the_complete_graph():
    graph = graph_from_descriptors(random_descriptors(5), neighbors=16)
    assert torch.equal(graph.adjacency(), FrameGraph.complete(5).adjacency())


def test_complete_graph_links_every_pair():
    assert FrameGraph.complete(4).neighbor_lists() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]


def test_neighbor_lists_are_symmetrised_and_linked_to_frame_zero():
    graph = FrameGraph.from_neighbor_lists([[1], [], [3, 2], []], frames=4)
    assert graph.neighbor_lists() == [[1, 2, 3], [0], [0, 3], [0, 2]]


def test_stats_report_edges_degrees_components_and_dense_cost():
    stats = FrameGraph.from_neighbor_lists([[1], [], [3], []], frames=4).stats()
    assert stats == {
        "frames": 4,
        "edges": 4,
        "degree_min": 1,
        "degree_mean": 2.0,
        "degree_max": 3,
        "components_before_repair": 1,
        "symmetric": True,
        "dense_cost_fraction": (4 + 2 * 4) / 16,
    }


def test_a_directed_graph_keeps_each_frame_to_the_frames_it_chose():
    graph = FrameGraph.from_neighbor_lists([[], [2], [1, 3], [1]], frames=4, connect_reference=False, symmetric=False)
    assert graph.neighbor_lists() == [[], [2], [1, 3], [1]]
    assert graph.indices.numel() == 4 and graph.num_edges == 3  # 1 -> 2 and 2 -> 1 link one pair
    assert graph.pairs().tolist() == [[1, 2], [1, 3], [2, 3]]
    with_reference = graph.with_reference_edges()
    assert with_reference.neighbor_lists() == [[1, 2, 3], [0, 2], [0, 1, 3], [0, 1]]
    assert not with_reference.symmetric and with_reference.stats()["dense_cost_fraction"] == (4 + 10) / 16


def test_reference_edges_are_added_once_and_only_where_missing():
    missing_one = FrameGraph.from_neighbor_lists([[1, 2], [0], [], [2]], frames=4, connect_reference=False)
    missing_other_way = FrameGraph.from_neighbor_lists(
        [[1, 2, 3], [0], [0], []], frames=4, connect_reference=False, symmetric=False
    )
    assert not missing_one.has_reference_edges() and not missing_other_way.has_reference_edges()
    for graph in (missing_one, missing_other_way):
        completed = graph.with_reference_edges()
        assert completed.has_reference_edges()
        assert completed.with_reference_edges() is completed
    built = graph_from_descriptors(torch.randn(40, 8, generator=torch.Generator().manual_seed(2)), neighbors=3)
    assert built.has_reference_edges() and built.with_reference_edges() is built
    assert FrameGraph.from_neighbor_lists([[]], frames=1).has_reference_edges()


def test_a_directed_knn_graph_gives_every_frame_exactly_k_plus_frame_zero():
    descriptors = torch.randn(300, 32, generator=torch.Generator().manual_seed(4))
    directed = graph_from_descriptors(descriptors, neighbors=6, symmetric=False, connect_reference=False)
    symmetric = graph_from_descriptors(descriptors, neighbors=6, connect_reference=False, symmetric=True)
    assert directed.degrees().tolist() == [6] * 300
    assert directed.stats()["components_before_repair"] == directed.component_count() == 1
    chosen = directed.adjacency()
    assert torch.equal(symmetric.adjacency(), chosen | chosen.T)
    assert symmetric.degrees().float().mean() > 6.5  # random descriptors: many choices are not mutual


def test_component_labels_match_a_breadth_first_search():
    generator = torch.Generator().manual_seed(3)
    frames = 200
    src = torch.randint(0, frames, (120,), generator=generator)
    dst = torch.randint(0, frames, (120,), generator=generator)
    labels = component_labels(src, dst, frames)
    neighbours: dict[int, set[int]] = {frame: set() for frame in range(frames)}
    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        neighbours[a].add(b)
        neighbours[b].add(a)
    for start in range(frames):
        seen, frontier = {start}, [start]
        while frontier:
            frontier = [n for f in frontier for n in neighbours[f] if n not in seen]
            seen.update(frontier)
        assert {frame for frame in range(frames) if labels[frame] == labels[start]} == seen


def test_bad_inputs_are_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="one neighbour list per frame"):
        FrameGraph.from_neighbor_lists([[1]], frames=3)
    with pytest.raises(ValueError, match="frame indices"):
        FrameGraph.from_neighbor_lists([[5], [], []], frames=3)
    with pytest.raises(ValueError, match="NaN"):
        graph_from_descriptors(torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="descriptors"):
        graph_from_descriptors(torch.ones(3))
