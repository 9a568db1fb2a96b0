"""Descriptor matching of listed pairs in torch, batched over pairs: mutual nearest neighbours that pass
Lowe's ratio test. Runs on the GPU when given one; the same arithmetic on the CPU is the reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vggt_sparse_ns.refine.features import Features

BATCH_BYTES = {"cuda": 2 << 30, "cpu": 256 << 20}
"""Similarity matrices computed at once, by device type."""


def mutual_nearest_neighbours(
    descriptors_a: torch.Tensor,
    descriptors_b: torch.Tensor,
    counts_a: torch.Tensor,
    counts_b: torch.Tensor,
    ratio: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Matches of a batch of padded pairs: descriptors [B, Na, D] and [B, Nb, D] (unit rows), true counts [B].

    Returns (pair index, index in a, index in b) of every match: a's nearest neighbour in b whose distance is
    below ``ratio`` times the second nearest one's, and whose own nearest neighbour in a is that row.
    """
    similarity = descriptors_a @ descriptors_b.transpose(1, 2)
    rows = torch.arange(similarity.shape[1], device=similarity.device)
    cols = torch.arange(similarity.shape[2], device=similarity.device)
    # Padding rows and columns masked in place, through masks that broadcast (no [B, Na, Nb] mask or copy).
    similarity.masked_fill_(rows[None, :, None] >= counts_a[:, None, None], -torch.inf)
    similarity.masked_fill_(cols[None, None, :] >= counts_b[:, None, None], -torch.inf)
    if similarity.shape[2] < 2:
        similarity = torch.nn.functional.pad(similarity, (0, 2 - similarity.shape[2]), value=-torch.inf)
    best_two, nearest_b = similarity.topk(2, dim=2)
    distances = torch.sqrt((2.0 - 2.0 * best_two).clamp(min=0.0))
    nearest_a = similarity.argmax(dim=1)  # [B, Nb]
    mutual = torch.gather(nearest_a, 1, nearest_b[..., 0].clamp(max=nearest_a.shape[1] - 1)) == rows[None]
    keep = (
        mutual
        & (distances[..., 0] < ratio * distances[..., 1])
        & torch.isfinite(best_two[..., 0])
        & (rows[None] < counts_a[:, None])
    )
    pair, index_a = keep.nonzero(as_tuple=True)
    return pair, index_a, nearest_b[pair, index_a, 0]


def match_pairs(
    features: Sequence[Features], pairs: np.ndarray, *, ratio: float, device: torch.device
) -> list[np.ndarray]:
    """[M, 2] keypoint index matches (in i, in j) for each pair (i, j), in the order of ``pairs``. All
    descriptors go to ``device`` once; each batch of pairs gathers its rows there."""
    matches: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64)] * len(pairs)
    if len(pairs) == 0:
        return matches
    counts = np.array([len(f) for f in features])
    offsets = np.concatenate([[0], np.cumsum(counts)])
    every = torch.from_numpy(np.concatenate([f.descriptors for f in features]).astype(np.float32)).to(device)
    budget = BATCH_BYTES.get(device.type, BATCH_BYTES["cpu"])
    order = np.argsort(-(counts[pairs[:, 0]] * counts[pairs[:, 1]]), kind="stable")
    start = 0
    while start < len(order):
        largest = max(int(counts[pairs[order[start], 0]] * counts[pairs[order[start], 1]]), 1)
        stop = min(len(order), start + max(1, budget // (4 * largest)))
        batch = pairs[order[start:stop]]
        descriptors_a, counts_a = _padded(every, offsets, counts, batch[:, 0])
        descriptors_b, counts_b = _padded(every, offsets, counts, batch[:, 1])
        pair, index_a, index_b = mutual_nearest_neighbours(descriptors_a, descriptors_b, counts_a, counts_b, ratio)
        found = torch.stack([pair, index_a, index_b], dim=1).cpu().numpy()
        bounds = np.searchsorted(found[:, 0], np.arange(len(batch) + 1))
        for position, index in enumerate(order[start:stop]):
            matches[index] = found[bounds[position] : bounds[position + 1], 1:]
        start = stop
    return matches


def _padded(
    every: torch.Tensor, offsets: np.ndarray, counts: np.ndarray, frames: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, longest, D] descriptors of ``frames`` gathered from the stacked ``every`` (zero rows as padding)."""
    longest = max(int(counts[frames].max()), 1)
    columns = np.arange(longest)
    rows = offsets[frames][:, None] + np.minimum(columns[None], np.maximum(counts[frames][:, None] - 1, 0))
    rows = np.minimum(rows, max(len(every) - 1, 0))  # a featureless frame at the end points past the last row
    valid = torch.from_numpy(columns[None] < counts[frames][:, None]).to(every.device)
    gathered = (
        every[torch.from_numpy(rows).to(every.device)] if len(every) else every.new_zeros(len(frames), longest, 128)
    )
    return gathered * valid[..., None], torch.from_numpy(counts[frames]).to(every.device)
