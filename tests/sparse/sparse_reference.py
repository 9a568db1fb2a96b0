"""Plain references for the sparse strategies: explicit boolean token masks [L, L] and SDPA.

Built from the documented semantics only (not from the code under test), so that the fast paths
are checked against an independent, obviously-correct formulation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """SDPA over all tokens with an explicit boolean mask (True: may attend)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def covisibility_mask(
    neighbor_lists: Sequence[Sequence[int]],
    tokens: int,
    special: int,
    symmetric: bool = True,
    all_special_tokens: bool = False,
) -> Tensor:
    """Token mask [S*T, S*T]: a query token sees all tokens of its own frame, of frame 0 and of its
    neighbours (lists symmetrised when ``symmetric``; frame 0 linked to all both ways), and with
    ``all_special_tokens`` every frame's special tokens."""
    frames = len(neighbor_lists)
    frame_sees = torch.eye(frames, dtype=torch.bool)
    frame_sees[0, :] = True
    frame_sees[:, 0] = True
    for frame, neighbours in enumerate(neighbor_lists):
        for neighbour in neighbours:
            frame_sees[frame, neighbour] = True
            frame_sees[neighbour, frame] |= symmetric
    position = torch.arange(frames * tokens)
    frame_of, is_special = position // tokens, position % tokens < special
    return (is_special[None, :] & all_special_tokens) | frame_sees[frame_of[:, None], frame_of[None, :]]


def reordered_positions(frames: int, tokens: int, special: int) -> Tensor:
    """Position of each original token once special tokens of all frames go first, then patches."""
    position = torch.arange(frames * tokens)
    frame_of, within = position // tokens, position % tokens
    patches = tokens - special
    return torch.where(
        within < special, frame_of * special + within, frames * special + frame_of * patches + within - special
    )


def block_mask(kept: Tensor, frames: int, tokens: int, special: int, query_block: int, key_block: int) -> Tensor:
    """Token mask [..., S*T, S*T] in original order from a kept-block table [..., nq, nk] over the reordered sequence."""
    position = reordered_positions(frames, tokens, special)
    return kept[..., position[:, None] // query_block, position[None, :] // key_block]
