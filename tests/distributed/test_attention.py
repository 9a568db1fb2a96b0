"""ShardedAttention's checks that need no process group."""

from __future__ import annotations

import pytest
import torch

from vggt_sparse_ns.distributed.attention import ShardedAttention
from vggt_sparse_ns.distributed.shard import FrameShard
from vggt_sparse_ns.sparse import DenseAttention, FrameLayout


def test_a_process_given_the_whole_scene_instead_of_its_frames_is_told_to_pass_its_share():
    shard = FrameShard(frames=7, rank=0, processes=2)  # frames 0-3
    attention = ShardedAttention(DenseAttention(), shard)
    with pytest.raises(ValueError, match=r"holds frames 0-3 of the scene, but the model was given 7"):
        attention.prepare(FrameLayout(1, 7, 10, 5), torch.zeros(1, 7, 5, 8))
