"""Which frame pairs are matched: never all pairs.

With a frame graph (covisibility attention), its edges; for dense runs, each frame's k most similar frames by
a bag of SIFT words (a small vocabulary clustered from the run's own descriptors, tf-idf weighted: no
weights to download); in both cases also each frame's next few frames in input order (a video's neighbours).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vggt_sparse_ns.refine.features import Features

VOCABULARY_WORDS = 256
VOCABULARY_SAMPLE = 50_000
KMEANS_ITERATIONS = 10


def sequential_pairs(num_frames: int, window: int) -> np.ndarray:
    """[E, 2] pairs (i, i + d) for d = 1..window."""
    pairs = [(i, i + d) for d in range(1, window + 1) for i in range(num_frames - d)]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def bag_of_words(features: Sequence[Features], device: torch.device, seed: int = 0) -> torch.Tensor:
    """[S, words] unit-length tf-idf histograms of each image's descriptors over a k-means vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    descriptors = [torch.from_numpy(f.descriptors) for f in features]
    every = torch.cat(descriptors)
    if len(every) == 0:
        return torch.zeros(len(features), 1, device=device)
    sample = every[torch.randperm(len(every), generator=generator)[:VOCABULARY_SAMPLE]].to(device)
    words = min(VOCABULARY_WORDS, len(sample))
    centres = sample[torch.randperm(len(sample), generator=generator)[:words].to(device)]
    for _ in range(KMEANS_ITERATIONS):
        assignment = (sample @ centres.T).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, assignment, sample)
        counts = torch.bincount(assignment, minlength=words).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
        centres = torch.nn.functional.normalize(centres, dim=1)
    histograms = torch.zeros(len(features), words, device=device)
    for index, image_descriptors in enumerate(descriptors):
        if len(image_descriptors):
            assignment = (image_descriptors.to(device) @ centres.T).argmax(1)
            histograms[index] = torch.bincount(assignment, minlength=words).float()
    document_frequency = (histograms > 0).sum(0).float()
    idf = torch.log((len(features) + 1) / (document_frequency + 1))
    return torch.nn.functional.normalize(histograms * idf, dim=1)


def retrieval_pairs(descriptors: torch.Tensor, neighbors: int) -> np.ndarray:
    """[E, 2] pairs (i < j): each frame with its ``neighbors`` most similar frames by cosine similarity."""
    count = len(descriptors)
    k = min(neighbors, count - 1)
    if k < 1:
        return np.zeros((0, 2), dtype=np.int64)
    similarity = descriptors @ descriptors.T
    similarity.fill_diagonal_(-torch.inf)
    nearest = similarity.topk(k, dim=1).indices.cpu().numpy()
    pairs = np.stack([np.repeat(np.arange(count), k), nearest.reshape(-1)], axis=1)
    return pairs


def unique_pairs(*pair_sets: np.ndarray) -> np.ndarray:
    """The union of pair lists as sorted (i < j) rows, without self-pairs or repeats."""
    pairs = np.concatenate([np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in pair_sets])
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


def select_pairs(
    features: Sequence[Features],
    graph_edges: np.ndarray | None,
    *,
    neighbors: int,
    sequential: int,
    device: torch.device,
) -> np.ndarray:
    """The pairs to match: the frame graph's edges when there is one, else retrieval by bag of words; plus
    ``sequential`` neighbours in input order."""
    count = len(features)
    if graph_edges is not None:
        candidates = np.asarray(graph_edges, dtype=np.int64).reshape(-1, 2)
    elif count - 1 <= neighbors:
        candidates = np.array([(i, j) for i in range(count) for j in range(i + 1, count)], dtype=np.int64)
    else:
        candidates = retrieval_pairs(bag_of_words(features, device), neighbors)
    return unique_pairs(candidates, sequential_pairs(count, sequential))
