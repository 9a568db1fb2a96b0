"""GeM-pooled, L2-normalised frame descriptors from patch tokens."""

from __future__ import annotations

import pytest
import torch

from vggt_sparse_ns.sparse import pooled_descriptors


def test_gem_pooling_of_a_hand_computed_example():
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    expected = torch.tensor([((1 + 27) / 2) ** (1 / 3), ((8 + 64) / 2) ** (1 / 3)])
    torch.testing.assert_close(pooled_descriptors(tokens)[0], expected / expected.norm())


def test_negative_values_are_clamped_before_pooling():
    tokens = torch.tensor([[[-5.0, 1.0], [-1.0, 1.0]]])
    descriptor = pooled_descriptors(tokens)[0]
    assert descriptor[0] < 1e-5 and descriptor[1] == pytest.approx(1.0)


def test_descriptors_are_unit_vectors_in_fp32_whatever_the_chunking():
    tokens = torch.randn(150, 7, 5, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    descriptors = pooled_descriptors(tokens)
    assert descriptors.shape == (150, 5) and descriptors.dtype == torch.float32
    torch.testing.assert_close(descriptors.norm(dim=-1), torch.ones(150))
    torch.testing.assert_close(descriptors[:10], pooled_descriptors(tokens[:10]))


def test_tokens_of_the_wrong_rank_are_rejected():
    with pytest.raises(ValueError, match=r"\[frames, patches, channels\]"):
        pooled_descriptors(torch.ones(3, 4))
