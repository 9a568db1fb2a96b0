"""The one-pass LayerNorm gives what nn.LayerNorm followed by autocast's cast gives, and the blocks take it
only where it runs: CUDA under half-precision autocast with Triton."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vggt_sparse_ns.layers.block import pre_norm
from vggt_sparse_ns.layers.kernels.layer_norm import layer_norm_to


def random_norm(columns: int, eps: float = 1e-6, device: str = "cpu") -> nn.LayerNorm:
    norm = nn.LayerNorm(columns, eps=eps).to(device)
    with torch.no_grad():
        norm.weight.normal_(1.0, 0.5)
        norm.bias.normal_(0.0, 0.5)
    return norm


def assert_rounds_like(out: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """Equal to the fp32 result rounded to dtype, but for rare one-ulp differences where fp32 sums in
    another order land on the other side of a rounding boundary. Triton's interpreter converts fp32 to
    bfloat16 by truncation (half of the values then differ by one ulp), so there only the bound holds."""
    reference = expected.to(dtype)
    assert out.dtype == dtype and out.shape == reference.shape
    ulp = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), reference.float(), rtol=ulp, atol=1e-5)
    if out.numel() and (out.is_cuda or dtype != torch.bfloat16):
        assert (out == reference).float().mean() > 0.99


@pytest.mark.parametrize(("shape", "columns"), [((2, 37, 1024), 1024), ((5, 768), 768), ((3, 7, 80), 80)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_interpreted_kernel_rounds_the_fp32_layer_norm(triton_interpreter, shape, columns, dtype):
    torch.manual_seed(0)
    x = 3 * torch.randn(shape) + 1
    norm = random_norm(columns)
    with torch.no_grad():
        assert_rounds_like(layer_norm_to(x, norm, dtype), norm(x), dtype)


def test_interpreted_kernel_reads_rows_of_a_wider_tensor(triton_interpreter):
    torch.manual_seed(0)
    wide = torch.randn(4, 10, 192)
    columns = wide[..., :96]  # rows 192 values apart
    norm = random_norm(96, eps=1e-5)
    with torch.no_grad():
        assert_rounds_like(layer_norm_to(columns, norm, torch.bfloat16), norm(columns), torch.bfloat16)


def test_interpreted_kernel_keeps_eps_for_rows_of_almost_equal_values(triton_interpreter):
    torch.manual_seed(0)
    x = 1e-4 * torch.randn(6, 64)  # variance 1e-8, far below eps
    norm = random_norm(64, eps=1e-5)
    with torch.no_grad():
        assert_rounds_like(layer_norm_to(x, norm, torch.float16), norm(x), torch.float16)


def test_a_norm_it_cannot_compute_is_refused():
    with pytest.raises(ValueError, match="LayerNorm over the last dimension"):
        layer_norm_to(torch.randn(4, 16), nn.LayerNorm(16, elementwise_affine=False), torch.bfloat16)
    with pytest.raises(ValueError, match="LayerNorm over the last dimension"):
        layer_norm_to(torch.randn(4, 16), nn.LayerNorm(32), torch.bfloat16)


def test_blocks_use_nn_layer_norm_off_cuda():
    x = torch.randn(2, 10, 64)
    norm = random_norm(64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(pre_norm(norm, x), norm(x))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize(
    ("columns", "dtype", "sliced", "rows"),
    [(1024, torch.bfloat16, False, 16 * 1041), (80, torch.float16, False, 333), (96, torch.bfloat16, True, 50),
     (64, torch.bfloat16, False, 0)],
)  # fmt: skip
def test_compiled_kernel_rounds_the_fp32_layer_norm(columns, dtype, sliced, rows):
    pytest.importorskip("triton")
    torch.manual_seed(0)
    x = 2 * torch.randn(1, rows, 2 * columns if sliced else columns, device="cuda") - 1
    x = x[..., :columns]
    norm = random_norm(columns, device="cuda")
    with torch.inference_mode():
        assert_rounds_like(layer_norm_to(x, norm, dtype), norm(x), dtype)


@cuda
def test_blocks_take_the_kernel_on_cuda_under_half_precision_autocast_for_inference_only():
    pytest.importorskip("triton")
    torch.manual_seed(0)
    x = torch.randn(1, 4 * 1041, 1024, device="cuda")
    norm = random_norm(1024, device="cuda")
    with torch.inference_mode():
        expected = norm(x)
        assert torch.equal(pre_norm(norm, x), expected)  # no autocast: nn.LayerNorm
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert_rounds_like(pre_norm(norm, x), expected, torch.bfloat16)
            assert torch.equal(pre_norm(norm, x, "torch"), expected)
    with torch.autocast("cuda", dtype=torch.bfloat16):  # gradients wanted: nn.LayerNorm, which has a backward
        normed = pre_norm(norm, x)
        assert normed.dtype == torch.float32 and normed.requires_grad
