"""The fused qk-norm + RoPE kernel computes what the plain attention layer computes (CUDA only)."""

from __future__ import annotations

import pytest
import torch

from vggt_sparse_ns.layers.attention import Attention
from vggt_sparse_ns.layers.kernels import triton_installed
from vggt_sparse_ns.layers.rope import RotaryEmbedding2D, grid_positions

cuda_with_triton = pytest.mark.skipif(
    not torch.cuda.is_available() or not triton_installed(),
    reason="needs a CUDA GPU and Triton (run on the device: see docs/benchmarks/README.md)",
)


@cuda_with_triton
@pytest.mark.parametrize("frames, grid", [(3, (28, 37)), (2, (37, 37)), (5, (4, 6))])
def test_fused_heads_match_the_plain_path(frames, grid):
    torch.manual_seed(0)
    layer = Attention(1024, 16, qk_norm=True).cuda()
    with torch.no_grad():
        for norm in (layer.q_norm, layer.k_norm):
            norm.weight.normal_(1.0, 0.3)
            norm.bias.normal_(0.0, 0.3)
    positions = grid_positions(*grid, device="cuda") + 1
    positions = torch.cat((positions.new_zeros(5, 2), positions))
    table = RotaryEmbedding2D(100.0).table(positions, 64, torch.float32)
    x = torch.randn(2, frames * positions.shape[0], 1024, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        plain = layer.heads(x, table, "torch")
        fused = layer.heads(x, table, "triton")
    for name, a, b in zip("qkv", plain, fused, strict=True):
        assert a.dtype == b.dtype == torch.bfloat16 and a.shape == b.shape
        relative = (a.float() - b.float()).norm() / a.float().norm()
        assert relative < 4e-3, f"{name}: relative error {relative:.2e}"


@cuda_with_triton
def test_heads_that_need_gradients_take_the_plain_path():
    layer = Attention(1024, 16, qk_norm=True).cuda()
    positions = torch.cat((torch.zeros(5, 2, dtype=torch.long, device="cuda"), grid_positions(4, 6, device="cuda") + 1))
    table = RotaryEmbedding2D(100.0).table(positions, 64, torch.float32)
    x = torch.randn(1, 2 * positions.shape[0], 1024, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        q, k, _ = layer.heads(x, table)  # the fused kernel has no backward
    (q.float().sum() + k.float().sum()).backward()
    assert layer.q_norm.weight.grad is not None and layer.k_norm.weight.grad is not None
