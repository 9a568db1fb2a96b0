"""Dense attention through the warp-specialised Gluon kernel is softmax attention, as exact as PyTorch's SDPA,
and runs only where it can.

The kernel needs a Hopper GPU (Triton's interpreter cannot run warp-specialised Gluon), so on CPU the
program is compiled for sm_90a with the installed Triton, which catches a Triton that no longer takes it;
on a Hopper GPU it is run against an fp64 reference at real and edge-case lengths."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from vggt_sparse_ns.layers.kernels import DeviceCapabilities
from vggt_sparse_ns.layers.kernels.dense_attention import dense_attention, not_supported_reasons
from vggt_sparse_ns.sparse import DenseAttention
from vggt_sparse_ns.sparse.base import FrameLayout

COMPILE_FOR_SM90 = textwrap.dedent(
    """
    import torch, triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource
    from triton.runtime.jit import mangle_type
    from vggt_sparse_ns.layers.kernels import frame_list_attention as api

    kernel = api._gluon_kernel()
    qkv = torch.empty(1024, 3, 4, 64, dtype=torch.bfloat16).permute(1, 2, 0, 3)
    tiles = (kernel.ROWS.value, api.GLUON_BLOCK_N, api.GLUON_BLOCK_N)
    operands = [api._gluon_operand(x, tile) for x, tile in zip((qkv[0].contiguous(), qkv[1], qkv[2]), tiles)]
    signature = {f"{name}_desc": mangle_type(operand[0]) for name, operand in zip("qkv", operands)}
    signature |= {f"{name}_head_{axis}": "i32" for name in "qkv" for axis in ("rows", "columns")}
    signature |= {"out_ptr": "*bf16", "out_head_stride": "i64", "out_row_stride": "i64", "indptr_ptr": "*i64",
                  "indices_ptr": "*i64", "order_ptr": "*i64", "tokens": "i32", "scale_log2": "fp32"}
    constants = {"HEAD_DIM": 64, "BLOCK_N": api.GLUON_BLOCK_N, "STAGES": api.GLUON_STAGES,
                 "CONSUMER_REGISTERS": api.GLUON_CONSUMER_REGISTERS}
    signature |= dict.fromkeys(constants, "constexpr")
    source = GluonASTSource(kernel.frame_list_attention_kernel, signature, constants)
    options = {"num_warps": 4, "maxnreg": api.GLUON_MAX_REGISTERS}
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    print(len(compiled.asm["cubin"]))
    """
)


def qkv(batch: int, heads: int, length: int, dtype: torch.dtype, device: str, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator(device).manual_seed(seed)
    return [1.5 * torch.randn(batch, heads, length, 64, generator=generator, device=device, dtype=dtype) for _ in "qkv"]


def relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return ((out.double() - reference).norm() / reference.norm()).item()


def test_kernel_compiles_for_hopper_with_the_installed_triton():
    pytest.importorskip("triton.experimental.gluon")
    environment = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", COMPILE_FOR_SM90], capture_output=True, text=True, env=environment, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 0


def test_inputs_the_kernel_cannot_take_are_refused_with_the_reason():
    q, k, v = qkv(1, 2, 100, torch.bfloat16, "cpu")
    assert "it runs on Hopper GPUs (CUDA compute capability 9.0) only" in not_supported_reasons(
        q, k, v, DeviceCapabilities.of(q.device)
    )
    with pytest.raises(ValueError, match="cannot take these inputs: it runs on Hopper GPUs"):
        dense_attention(q, k, v)
    empty = torch.zeros(0, 2, 100, 64, dtype=torch.bfloat16)
    hopper = DeviceCapabilities("cuda", (9, 0), triton=True, gluon=True)
    assert not_supported_reasons(empty, empty, empty, hopper) == [
        "q, k and v must be [B, heads, L, head_dim] of one shape, not empty"
    ]


def test_dense_attention_on_cpu_is_sdpa():
    q, k, v = qkv(1, 2, 300, torch.float32, "cpu")
    plan = DenseAttention().prepare(FrameLayout(batch=1, frames=3, tokens_per_frame=100, special_tokens=5), q)
    torch.testing.assert_close(plan(q, k, v, 0), F.scaled_dot_product_attention(q, k, v), rtol=0, atol=0)
    assert plan.summary() == {"strategy": "dense", "implementation": "sdpa"}


@pytest.mark.parametrize(
    "batch, heads, length",
    [(1, 2, 4122), (2, 3, 1000), (1, 1, 1024), (1, 2, 5), (1, 1, 193), (1, 16, 8 * 1374)],
    ids=["partial-last-tile", "batched", "whole-tiles", "one-partial-tile", "one-row-past-a-program", "8-frames"],
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_kernel_is_as_exact_as_sdpa(batch, heads, length, dtype, hopper):
    q, k, v = qkv(batch, heads, length, dtype, "cuda")
    assert not not_supported_reasons(q, k, v, DeviceCapabilities.of(q.device))
    reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    ours = relative_error(dense_attention(q, k, v), reference)
    sdpa = relative_error(F.scaled_dot_product_attention(q, k, v), reference)
    assert ours <= 1.25 * sdpa + 1e-4, (ours, sdpa)


def test_kernel_takes_strided_inputs(hopper):
    qkv_rows = 1.5 * torch.randn(1, 700, 3, 2, 64, device="cuda", dtype=torch.bfloat16)
    q, k, v = qkv_rows.permute(2, 0, 3, 1, 4).unbind(0)  # the layout the attention layer's qkv gives
    reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    assert relative_error(dense_attention(q, k, v), reference) < 1e-2


def test_dense_attention_runs_the_kernel_on_hopper(hopper):
    q, k, v = qkv(1, 16, 4 * 1374, torch.bfloat16, "cuda")
    layout = FrameLayout(batch=1, frames=4, tokens_per_frame=1374, special_tokens=5)
    auto = DenseAttention().prepare(layout, q)
    torch.testing.assert_close(auto(q, k, v, 0), dense_attention(q, k, v), rtol=0, atol=0)
    assert auto.summary() == {"strategy": "dense", "implementation": "gluon"}
    sdpa = DenseAttention(implementation="sdpa").prepare(layout, q)
    torch.testing.assert_close(sdpa(q, k, v, 0), F.scaled_dot_product_attention(q, k, v), rtol=0, atol=0)


@pytest.mark.parametrize("dtype, head_dim", [(torch.float32, 64), (torch.bfloat16, 128)], ids=["fp32", "head-dim-128"])
def test_dense_attention_falls_back_to_sdpa_where_the_kernel_cannot_run(dtype, head_dim, hopper):
    q, k, v = (torch.randn(1, 2, 500, head_dim, device="cuda", dtype=dtype) for _ in "qkv")
    plan = DenseAttention().prepare(FrameLayout(batch=1, frames=1, tokens_per_frame=500, special_tokens=5), q)
    torch.testing.assert_close(plan(q, k, v, 0), F.scaled_dot_product_attention(q, k, v), rtol=0, atol=0)
    assert plan.summary()["implementation"] == "sdpa"
