"""The frame-list attention kernel equals softmax attention under the covisibility token mask.

On CPU the kernel runs in Triton's interpreter (same program, numpy arithmetic); on a CUDA GPU the
compiled kernel is checked in bf16 against the gather path at the model's real shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vggt_sparse_ns.layers.kernels import DeviceCapabilities, triton_installed
from vggt_sparse_ns.layers.kernels.frame_list_attention import FrameLists, frame_list_attention


def key_mask(lists: list[list[int]], tokens: int, special: int, all_special: bool = True) -> torch.Tensor:
    """[S*T, S*T]: query tokens of frame f see every special token (when ``all_special``) and the tokens of lists[f]."""
    frames = len(lists)
    sees = torch.zeros(frames, frames, dtype=torch.bool)
    for frame, listed in enumerate(lists):
        sees[frame, listed] = True
    position = torch.arange(frames * tokens)
    frame_of, is_special = position // tokens, position % tokens < special
    return (is_special[None, :] & all_special) | sees[frame_of[:, None], frame_of[None, :]]


def csr(lists: list[list[int]], device: str = "cpu") -> FrameLists:
    counts = torch.tensor([len(listed) for listed in lists])
    indptr = torch.cat((torch.zeros(1, dtype=torch.long), counts.cumsum(0)))
    return FrameLists.from_csr(indptr, torch.tensor([frame for listed in lists for frame in listed]), device)


def reference(q, k, v, lists, tokens, special, all_special=True):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask(lists, tokens, special, all_special))


LISTS = [[0, 1, 2, 3, 4], [1, 0], [2, 0, 4], [3, 0], [4, 0, 2]]
"""Frame 0 sees every frame (it attends to all, as the reference frame does); lists need not be sorted."""


@pytest.mark.parametrize("all_special", [True, False])
@pytest.mark.parametrize("block_m, block_n", [(16, 16), (32, 64), (128, 64)])
def test_interpreted_kernel_equals_masked_attention(triton_interpreter, block_m, block_n, all_special):
    tokens, special, heads, head_dim = 37, 5, 3, 16
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(heads, len(LISTS) * tokens, head_dim, generator=generator) for _ in range(3))
    out = frame_list_attention(
        q, k, v, csr(LISTS), tokens, special, all_special, block_m=block_m, block_n=block_n, implementation="triton"
    )
    expected = reference(q, k, v, LISTS, tokens, special, all_special)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_interpreted_kernel_reads_strided_values_and_writes_into_out(triton_interpreter):
    tokens, special, heads, head_dim = 21, 5, 2, 16
    generator = torch.Generator().manual_seed(1)
    qkv = torch.randn(len(LISTS) * tokens, 3, heads, head_dim, generator=generator)
    q, k, v = qkv.permute(1, 2, 0, 3).unbind(0)
    out = torch.full((heads, len(LISTS) * tokens, head_dim), float("nan"))
    frame_list_attention(q, k, v, csr(LISTS), tokens, special, out=out, block_m=16, block_n=32, implementation="triton")
    torch.testing.assert_close(out, reference(q, k, v, LISTS, tokens, special), rtol=0, atol=1e-5)


def test_a_frame_list_that_omits_a_frame_changes_its_output(triton_interpreter):
    tokens, special, heads, head_dim = 21, 5, 1, 16
    generator = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(heads, len(LISTS) * tokens, head_dim, generator=generator) for _ in range(3))
    narrower = [listed[:-1] if frame == 2 else listed for frame, listed in enumerate(LISTS)]
    full = frame_list_attention(q, k, v, csr(LISTS), tokens, special, block_m=16, block_n=16, implementation="triton")
    narrow = frame_list_attention(
        q, k, v, csr(narrower), tokens, special, block_m=16, block_n=16, implementation="triton"
    )
    frame_two = slice(2 * tokens, 3 * tokens)
    assert (full[:, frame_two] - narrow[:, frame_two]).abs().max() > 1e-2
    torch.testing.assert_close(full[:, : 2 * tokens], narrow[:, : 2 * tokens], rtol=0, atol=0)


def test_inputs_the_kernel_cannot_take_are_refused_before_launch():
    q = torch.zeros(1, 55, 16)
    wide = torch.zeros(1, 55, 48)
    with pytest.raises(ValueError, match="triton frame_list_attention cannot take these inputs: it takes a head dim"):
        frame_list_attention(wide, wide, wide, csr(LISTS), 11, 5, implementation="triton")
    with pytest.raises(ValueError, match="out must be like q"):
        frame_list_attention(q, q, q, csr(LISTS), 11, 5, out=torch.zeros(1, 55, 8), implementation="triton")
    with pytest.raises(ValueError, match="build them with device="):
        frame_list_attention(q, q, q, csr(LISTS, device="meta"), 11, 5, implementation="triton")


def test_a_frame_with_nothing_to_attend_to_gets_zeros(triton_interpreter):
    tokens, special = 11, 5
    q, k, v = (torch.randn(1, 5 * tokens, 16, generator=torch.Generator().manual_seed(seed)) for seed in range(3))
    lists = [[0], [], [2], [3], [4]]
    out = frame_list_attention(
        q, k, v, csr(lists), tokens, special, all_special_tokens=False, block_m=16, block_n=16, implementation="triton"
    )
    assert torch.equal(out[:, tokens : 2 * tokens], torch.zeros(1, tokens, 16))
    expected = reference(q, k, v, lists, tokens, special, all_special=False)
    torch.testing.assert_close(out[:, 2 * tokens :], expected[:, 2 * tokens :], rtol=0, atol=1e-5)


def test_a_sequence_that_is_not_whole_frames_is_refused():
    q = torch.zeros(1, 50, 16)
    with pytest.raises(ValueError, match="not 5 frames of 11"):
        frame_list_attention(q, q, q, csr(LISTS), 11, 5, implementation="triton")


@pytest.mark.skipif(
    not torch.cuda.is_available() or not triton_installed(),
    reason="needs a CUDA GPU and Triton (run on the device: see docs/benchmarks/README.md)",
)
@pytest.mark.parametrize("all_special_tokens", [True, False])
def test_compiled_kernels_match_the_gather_path_at_model_shapes(all_special_tokens):
    from vggt_sparse_ns.layers.kernels.frame_list_attention import gluon_not_supported_reasons
    from vggt_sparse_ns.sparse import CovisibilityAttention, FrameLayout

    frames, tokens, special, heads, head_dim = 40, 1041, 5, 16, 64
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(1, heads, frames * tokens, head_dim, generator=generator, device="cuda", dtype=torch.bfloat16)
        for _ in range(3)
    )
    patch_tokens = torch.randn(1, frames, tokens - special, 32, generator=generator, device="cuda")
    layout = FrameLayout(1, frames, tokens, special)
    plans = {
        name: CovisibilityAttention(neighbors=4, implementation=name, all_special_tokens=all_special_tokens).prepare(
            layout, patch_tokens
        )
        for name in ("triton", "gather")
    }
    expected = plans["gather"](q, k, v, layer=0)[0].float()
    torch.testing.assert_close(plans["triton"](q, k, v, layer=0)[0].float(), expected, rtol=0, atol=2e-2)
    gluon_reasons = gluon_not_supported_reasons(q[0], k[0], v[0], all_special_tokens, DeviceCapabilities.of(q.device))
    implementations = ["triton"] + ([] if gluon_reasons else ["gluon"])
    for implementation in implementations:
        out = frame_list_attention(
            q[0], k[0], v[0], plans["triton"].scene_lists[0], tokens, special, all_special_tokens,
            implementation=implementation,
        )  # fmt: skip
        torch.testing.assert_close(out.float(), expected, rtol=0, atol=2e-2)


def test_an_unknown_implementation_or_a_gluon_refusal_is_one_clear_message():
    q = torch.zeros(1, 55, 64)
    with pytest.raises(ValueError, match="implementation is gluon or triton, not 'cuda'"):
        frame_list_attention(q, q, q, csr(LISTS), 11, 5, implementation="cuda")
    with pytest.raises(ValueError, match="gluon frame_list_attention cannot take these inputs: .*it takes bfloat16"):
        frame_list_attention(q, q, q, csr(LISTS), 11, 5, all_special_tokens=False, implementation="gluon")
    with pytest.raises(ValueError, match="cannot take these inputs: it does not attend to every frame's special"):
        frame_list_attention(q, q, q, csr(LISTS), 11, 5, all_special_tokens=True, implementation="gluon")


@pytest.mark.parametrize("tokens", [300, 256, 37], ids=["partial-last-tile", "whole-tiles", "one-partial-tile"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gluon_kernel_equals_masked_attention(hopper, tokens, dtype):
    heads = 2
    lists = [[0, 1, 2, 3, 4], [1, 0], [], [3, 0], [4, 0, 2]]  # frame 2 attends to nothing: zeros
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(heads, len(lists) * tokens, 64, generator=generator, device="cuda", dtype=dtype) for _ in range(3)
    )
    out = frame_list_attention(q, k, v, csr(lists, "cuda"), tokens, 5, all_special_tokens=False, implementation="gluon")
    mask = key_mask(lists, tokens, 5, all_special=False).cuda()
    expected = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask)
    empty = slice(2 * tokens, 3 * tokens)
    assert torch.equal(out[:, empty], torch.zeros_like(out[:, empty]))
    expected[:, empty] = 0  # masked SDPA gives NaN for a row with no key
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-2)


def in_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """x [heads, L, 64] as a view with its heads stacked (contiguous, or rows of a wider tensor), side by side
    (like v in the qkv projection) or interleaved with another tensor's (neither: the Gluon path copies it)."""
    if layout == "stacked":
        return x.contiguous()
    if layout == "stacked-wide-rows":
        return torch.cat([x, x], dim=-1)[..., :64]
    if layout == "side-by-side":
        return torch.stack([x, x, x]).permute(2, 0, 1, 3).contiguous()[:, 2].transpose(0, 1)
    return torch.stack([x, x], dim=2).permute(1, 0, 2, 3).contiguous()[:, :, 0].transpose(0, 1)


@pytest.mark.parametrize(
    "layouts",
    [
        ("side-by-side",) * 3,
        ("stacked", "side-by-side", "interleaved"),
        ("interleaved", "stacked-wide-rows", "side-by-side"),
    ],
    ids="-".join,
)
def test_gluon_kernel_reads_strided_inputs_and_writes_into_a_strided_out(hopper, layouts):
    tokens, heads = 300, 2
    q, k, v = (
        in_layout(torch.randn(heads, len(LISTS) * tokens, 64, device="cuda", dtype=torch.bfloat16), layout)
        for layout in layouts
    )
    out = torch.full((len(LISTS) * tokens, heads, 64), float("nan"), device="cuda", dtype=torch.bfloat16)
    args = (q, k, v, csr(LISTS, "cuda"), tokens, 5, False)
    frame_list_attention(*args, out=out.transpose(0, 1), implementation="gluon")
    expected = frame_list_attention(*args, implementation="triton")
    torch.testing.assert_close(out.transpose(0, 1).float(), expected.float(), rtol=0, atol=2e-2)


@pytest.mark.parametrize(
    ("layout", "in_place"),
    [("stacked", True), ("stacked-wide-rows", True), ("side-by-side", True), ("interleaved", False)],
)
def test_gluon_path_reads_stacked_or_side_by_side_heads_where_they_lie(layout, in_place):
    pytest.importorskip("triton.experimental.gluon")
    from vggt_sparse_ns.layers.kernels.frame_list_attention import _gluon_operand

    x = in_layout(torch.randn(4, 300, 64, dtype=torch.bfloat16), layout)
    descriptor, head_rows, head_columns = _gluon_operand(x, 128)
    assert (descriptor.base.data_ptr() == x.data_ptr()) == in_place
    rows, columns = descriptor.shape
    assert (rows, columns) == ((300, 4 * 64) if layout == "side-by-side" else (4 * 300, 64))
    assert descriptor.strides == [x.stride(1) if in_place else 64, 1]
    assert (head_rows, head_columns) == ((0, 64) if layout == "side-by-side" else (300, 0))


@pytest.mark.parametrize("all_special", [True, False])
def test_interpreted_kernel_attends_a_range_of_query_frames_over_all_keys(triton_interpreter, all_special):
    tokens, special, heads, head_dim = 21, 5, 2, 16
    generator = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(heads, len(LISTS) * tokens, head_dim, generator=generator) for _ in range(3))
    lists = csr(LISTS)
    whole = frame_list_attention(q, k, v, lists, tokens, special, all_special, block_m=16, implementation="triton")
    first, stop = 1, 4
    queries = slice(first * tokens, stop * tokens)
    chunk = frame_list_attention(
        q[:, queries], k, v, lists.query_range(first, stop), tokens, special, all_special, block_m=16,
        implementation="triton",
    )  # fmt: skip
    torch.testing.assert_close(chunk, whole[:, queries], rtol=0, atol=0)


def test_a_query_range_outside_the_lists_is_refused():
    with pytest.raises(ValueError, match="not within the 5 listed frames"):
        csr(LISTS).query_range(3, 6)
