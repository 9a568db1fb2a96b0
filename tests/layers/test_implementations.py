"""Operation.choose: auto takes the first implementation that can run, a name takes that one or is refused with
its reasons; the norms' implementations (qk-norm + RoPE, the pre-norm) resolve as documented, with made-up
device capabilities standing in for GPUs."""

from __future__ import annotations

from typing import get_args

import pytest
import torch
from torch import nn

from vggt_sparse_ns.layers.attention import QK_NORM_ROPE, Attention, NormImplementation, QkNormRopeInputs
from vggt_sparse_ns.layers.block import PRE_NORM, PreNormInputs
from vggt_sparse_ns.layers.implementations import Implementation, Operation
from vggt_sparse_ns.layers.kernels import DeviceCapabilities
from vggt_sparse_ns.layers.rope import RotaryEmbedding2D, grid_positions

CPU = DeviceCapabilities("cpu", triton=True)
HOPPER = DeviceCapabilities("cuda", (9, 0), triton=True, gluon=True)
NO_TRITON_GPU = DeviceCapabilities("cuda", (9, 0), triton=False, gluon=False)

FAST_ON_EVEN = Operation[int, str](
    "a made-up operation",
    (
        Implementation("fast", "ran fast", lambda n: [] if n % 2 == 0 else ["it takes even numbers"]),
        Implementation("positive", "ran positive", lambda n: [] if n > 0 else ["it takes positive numbers"]),
    ),
)


def test_auto_takes_the_first_implementation_that_can_run():
    assert FAST_ON_EVEN.choose("auto", 4).name == "fast"
    assert FAST_ON_EVEN.choose("auto", 3).name == "positive"


def test_a_named_implementation_runs_or_is_refused_with_its_reasons_never_replaced():
    assert FAST_ON_EVEN.choose("positive", 4).run == "ran positive"
    with pytest.raises(ValueError, match="a made-up operation cannot run these inputs with fast: fast: it takes even"):
        FAST_ON_EVEN.choose("fast", 3)


def test_where_nothing_can_run_every_implementations_reasons_are_named():
    with pytest.raises(ValueError, match="fast: it takes even numbers | positive: it takes positive numbers"):
        FAST_ON_EVEN.choose("auto", -3)


def test_an_unknown_implementation_is_refused_naming_the_choices():
    assert FAST_ON_EVEN.choices == ("auto", "fast", "positive")
    with pytest.raises(ValueError, match="a made-up operation has no implementation 'slow'; choose one of auto, fast"):
        FAST_ON_EVEN.choose("slow", 2)
    with pytest.raises(ValueError, match="no implementation 'cuda'"):
        FAST_ON_EVEN.named("cuda")


def test_the_norm_setting_offers_exactly_the_norms_implementations():
    assert get_args(NormImplementation) == PRE_NORM.choices == QK_NORM_ROPE.choices == ("auto", "triton", "torch")


def pre_norm_inputs(capabilities: DeviceCapabilities, dtype: torch.dtype | None) -> PreNormInputs:
    return PreNormInputs(torch.zeros(2, 8), nn.LayerNorm(8).requires_grad_(False), dtype, capabilities)


def test_the_pre_norm_runs_in_one_pass_only_on_cuda_under_half_precision_autocast():
    assert PRE_NORM.choose("auto", pre_norm_inputs(HOPPER, torch.bfloat16)).name == "triton"
    assert PRE_NORM.choose("auto", pre_norm_inputs(HOPPER, None)).name == "torch"
    assert PRE_NORM.choose("auto", pre_norm_inputs(CPU, torch.bfloat16)).name == "torch"
    reasons = PRE_NORM.named("triton").not_supported_reasons
    assert reasons(pre_norm_inputs(HOPPER, None)) == [
        "it writes the autocast dtype, and autocast is off",
        "it takes bfloat16 or float16, not torch.float32",
    ]
    assert reasons(pre_norm_inputs(CPU, torch.bfloat16)) == ["it runs on CUDA devices, not cpu"]
    assert reasons(pre_norm_inputs(NO_TRITON_GPU, torch.float16)) == ["Triton is not installed"]


def test_the_pre_norm_takes_plain_pytorch_where_a_gradient_is_wanted():
    inputs = PreNormInputs(torch.zeros(2, 8), nn.LayerNorm(8), torch.bfloat16, HOPPER)
    assert PRE_NORM.named("triton").not_supported_reasons(inputs) == ["it has no backward and a gradient is wanted"]
    assert PRE_NORM.choose("auto", inputs).name == "torch"
    with torch.inference_mode():
        assert PRE_NORM.choose("auto", inputs).name == "triton"


def qk_inputs(capabilities: DeviceCapabilities, dtype: torch.dtype) -> QkNormRopeInputs:
    layer = Attention(32, 2, qk_norm=True).requires_grad_(False)
    rope = RotaryEmbedding2D(100.0).table(grid_positions(2, 3), 16, torch.float32)
    return QkNormRopeInputs(layer, torch.zeros(1, 6, 96, dtype=dtype), rope, capabilities)


def test_qk_norm_and_rope_are_fused_only_on_cuda_in_half_precision():
    assert QK_NORM_ROPE.choose("auto", qk_inputs(HOPPER, torch.bfloat16)).name == "triton"
    assert QK_NORM_ROPE.choose("auto", qk_inputs(HOPPER, torch.float32)).name == "torch"
    assert QK_NORM_ROPE.choose("auto", qk_inputs(CPU, torch.bfloat16)).name == "torch"
    with pytest.raises(
        ValueError, match="qk-norm \\+ RoPE cannot run these inputs with triton: triton: it runs on CUDA"
    ):
        QK_NORM_ROPE.choose("triton", qk_inputs(CPU, torch.float32))
