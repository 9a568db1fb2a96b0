"""Each global-attention operation resolves its implementation as documented: on CPU the plain-PyTorch one, on
made-up GPU capabilities the kernels, each GPU implementation refusing with its reason where it cannot run;
the settings offer exactly the operation's implementations and refuse any other name; the plan's summary
names the implementation that ran."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from vggt_sparse_ns.layers.kernels import DeviceCapabilities
from vggt_sparse_ns.sparse import (
    BlockSparseAttention,
    CovisibilityAttention,
    DenseAttention,
    FrameGraph,
    FrameLayout,
)
from vggt_sparse_ns.sparse.block_sparse import BLOCK_SPARSE_ATTENTION, BlockSparseImplementation
from vggt_sparse_ns.sparse.covisibility import (
    COVISIBILITY_ATTENTION,
    CovisibilityImplementation,
    CovisibilityInputs,
)
from vggt_sparse_ns.sparse.dense import DENSE_ATTENTION, DenseImplementation, DenseInputs

CPU = DeviceCapabilities.of(torch.device("cpu"))
HOPPER = DeviceCapabilities("cuda", (9, 0), triton=True, gluon=True)
AMPERE = DeviceCapabilities("cuda", (8, 0), triton=True, gluon=True)
FRAMES, TOKENS, SPECIAL = 3, 20, 5


def heads(batch: int, heads: int, head_dim: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """q, k, v [B, heads, S * T, head_dim] on the CPU; only their shape, dtype and layout matter here."""
    return [torch.zeros(batch, heads, FRAMES * TOKENS, head_dim, dtype=dtype) for _ in "qkv"]


def dense(capabilities: DeviceCapabilities, head_dim: int = 64, dtype: torch.dtype = torch.bfloat16) -> DenseInputs:
    return DenseInputs(*heads(1, 2, head_dim, dtype), capabilities)


def covisibility(
    capabilities: DeviceCapabilities,
    head_dim: int = 64,
    dtype: torch.dtype = torch.bfloat16,
    all_special_tokens: bool = False,
) -> CovisibilityInputs:
    q, k, v = (x[0] for x in heads(1, 2, head_dim, dtype))
    return CovisibilityInputs(q, k, v, SPECIAL, all_special_tokens, capabilities)


@pytest.mark.parametrize(
    ("setting", "operation"),
    [
        (DenseImplementation, DENSE_ATTENTION),
        (CovisibilityImplementation, COVISIBILITY_ATTENTION),
        (BlockSparseImplementation, BLOCK_SPARSE_ATTENTION),
    ],
)
def test_each_setting_offers_exactly_its_operations_implementations_fastest_first(setting, operation):
    assert get_args(setting) == operation.choices


@pytest.mark.parametrize(
    ("strategy", "operation"),
    [(DenseAttention, "dense"), (CovisibilityAttention, "covisibility"), (BlockSparseAttention, "block-sparse")],
)
def test_an_unknown_implementation_is_refused_when_the_strategy_is_made(strategy, operation):
    with pytest.raises(ValueError, match=f"{operation} attention has no implementation 'cuda'; choose one of auto, "):
        strategy(implementation="cuda")


def test_dense_attention_runs_sdpa_on_cpu_and_says_why_not_gluon():
    assert DENSE_ATTENTION.choose("auto", dense(CPU)).name == "sdpa"
    reasons = DENSE_ATTENTION.named("gluon").not_supported_reasons(dense(CPU))
    assert "it runs on Hopper GPUs (CUDA compute capability 9.0) only" in reasons


def test_dense_attention_runs_gluon_on_hopper_in_half_precision_at_head_dim_64():
    assert DENSE_ATTENTION.choose("auto", dense(HOPPER)).name == "gluon"
    assert DENSE_ATTENTION.choose("auto", dense(HOPPER, dtype=torch.float16)).name == "gluon"


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        (dense(AMPERE), "it runs on Hopper GPUs (CUDA compute capability 9.0) only"),
        (
            dense(HOPPER, dtype=torch.float32),
            "it takes bfloat16 or float16 with head dim 64, not torch.float32 with 64",
        ),
        (dense(HOPPER, head_dim=128), "it takes bfloat16 or float16 with head dim 64, not torch.bfloat16 with 128"),
        (dense(DeviceCapabilities("cuda", (9, 0), triton=True)), "it needs Triton 3.6 or newer with Gluon"),
    ],
    ids=["ampere", "fp32", "head-dim-128", "old-triton"],
)
def test_where_gluon_cannot_run_dense_attention_is_sdpa_and_gluon_says_why(inputs, reason):
    assert DENSE_ATTENTION.named("gluon").not_supported_reasons(inputs) == [reason]
    assert DENSE_ATTENTION.choose("auto", inputs).name == "sdpa"
    with pytest.raises(ValueError, match="dense attention cannot run these inputs with gluon"):
        DENSE_ATTENTION.choose("gluon", inputs)


def test_covisibility_attention_gathers_on_cpu_and_says_why_not_the_kernels():
    inputs = covisibility(CPU)
    assert COVISIBILITY_ATTENTION.choose("auto", inputs).name == "gather"
    assert "it runs on Hopper GPUs (CUDA compute capability 9.0) only" in _reasons("gluon", inputs)
    assert _reasons("triton", inputs) == ["it runs on CUDA devices, not cpu"]


def _reasons(name: str, inputs: CovisibilityInputs) -> list[str]:
    return COVISIBILITY_ATTENTION.named(name).not_supported_reasons(inputs)


@pytest.mark.parametrize(
    ("inputs", "chosen", "refusals"),
    [
        (covisibility(HOPPER), "gluon", {}),
        (
            covisibility(HOPPER, all_special_tokens=True),
            "triton",
            {"gluon": "it does not attend to every frame's special tokens (all_special_tokens)"},
        ),
        (covisibility(AMPERE), "triton", {"gluon": "it runs on Hopper GPUs (CUDA compute capability 9.0) only"}),
        (
            covisibility(HOPPER, dtype=torch.float32),
            "gather",
            {"triton": "it takes bfloat16 or float16, not torch.float32"},
        ),
        (
            covisibility(AMPERE, head_dim=48),
            "gather",
            {"triton": "it takes a head dim that is a power of two from 16 to 256, not 48"},
        ),
        (
            covisibility(DeviceCapabilities("cuda", (9, 0))),
            "gather",
            {"gluon": "it needs Triton 3.6 or newer with Gluon", "triton": "Triton is not installed"},
        ),
    ],
    ids=["hopper", "all-special-tokens", "ampere", "fp32", "head-dim-48", "no-triton"],
)
def test_covisibility_attention_takes_the_first_kernel_that_can_run_on_a_gpu(inputs, chosen, refusals):
    assert COVISIBILITY_ATTENTION.choose("auto", inputs).name == chosen
    for name, reason in refusals.items():
        assert reason in _reasons(name, inputs)


def test_block_sparse_attention_uses_flex_on_cuda_and_the_mask_elsewhere():
    assert BLOCK_SPARSE_ATTENTION.choose("auto", AMPERE).name == "flex"
    assert BLOCK_SPARSE_ATTENTION.choose("auto", CPU).name == "mask"
    with pytest.raises(ValueError, match="flex: compiled FlexAttention runs here on CUDA devices, not cpu"):
        BLOCK_SPARSE_ATTENTION.choose("flex", CPU)


@pytest.mark.parametrize(
    ("strategy", "ran"),
    [
        (DenseAttention(), "sdpa"),
        (CovisibilityAttention(graph=FrameGraph.complete(FRAMES)), "gather"),
        (BlockSparseAttention(query_block=16, key_block=16), "mask"),
    ],
    ids=["dense", "covisibility", "block-sparse"],
)
def test_the_summary_names_the_implementation_that_ran(strategy, ran):
    plan = strategy.prepare(FrameLayout(1, FRAMES, TOKENS, SPECIAL), torch.zeros(1, FRAMES, TOKENS - SPECIAL, 8))
    assert plan.summary()["implementation"] is None  # nothing ran yet
    plan(*heads(1, 2, 16, torch.float32), 0)
    assert plan.summary()["implementation"] == ran


def test_a_named_kernel_that_cannot_run_is_refused_by_the_plan_not_replaced():
    strategy = CovisibilityAttention(graph=FrameGraph.complete(FRAMES), implementation="triton")
    plan = strategy.prepare(FrameLayout(1, FRAMES, TOKENS, SPECIAL), torch.zeros(1, FRAMES, TOKENS - SPECIAL, 8))
    with pytest.raises(ValueError, match="covisibility attention cannot run these inputs with triton: triton: it runs"):
        plan(*heads(1, 2, 16, torch.float32), 0)
