"""Attention over per-frame key lists, reading each listed frame's keys and values where they lie (no gathers).

The sequence is S frames of T tokens, each frame's first ``special_tokens`` being its camera and
register tokens. Every query token of frame f attends to the tokens of the frames listed for f
(CSR ``indptr``/``indices``, f itself included when listed) and, optionally, to the special tokens
of all S frames. This is covisibility attention; its plain-PyTorch reference gathers the listed
frames' keys into contiguous batches for SDPA, which costs a copy of every gathered key and value
per layer. Here one program owns a block of one frame's queries and one head and walks a virtual
key sequence (the special tokens, packed once per call, then the listed frames' tokens), loading
each key tile where it lies through tensor descriptors (TMA on Hopper): flash-attention's online
softmax in fp32, with no copy of the listed frames' keys. On Hopper GPUs, without the shared special
tokens, a warp-specialised Gluon version of the same walk runs instead (_frame_list_attention_gluon.py:
a producer warp streams the key tiles by TMA and three warpgroups take turns on the tensor cores,
each computing its softmax while the next one's products run; q, k, v are read where they lie when their
heads are stacked or side by side, as for v, a view of the qkv projection); dense attention is its
one-frame case.
Triton is imported lazily: the package works without it (CPU, MPS).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from vggt_sparse_ns.layers.kernels import HALF_PRECISION, DeviceCapabilities


@dataclass(frozen=True, eq=False)
class FrameLists:
    """Which frames each query frame attends to, as the kernel reads it: built once per frame graph and
    reused by every layer (the mask is data; the kernel is generic)."""

    indptr: Tensor
    """[S + 1] int64: frame f attends to the frames indices[indptr[f]:indptr[f + 1]]."""
    indices: Tensor
    """int64 frame indices (any order within a row; f itself only when listed)."""
    launch_order: Tensor
    """[S] frames by descending list length (stable): high-degree frames (frame 0 sees every frame) are
    launched first within each head, so they do not run alone at the end."""

    @classmethod
    def from_csr(cls, indptr: Tensor, indices: Tensor, device: torch.device | str | None = None) -> FrameLists:
        indptr = indptr.to(device or indptr.device, torch.int64)
        indices = indices.to(indptr.device, torch.int64)
        launch_order = torch.argsort(indptr[1:] - indptr[:-1], descending=True, stable=True)
        return cls(indptr, indices, launch_order)

    @property
    def frames(self) -> int:
        """Query frames listed."""
        return self.indptr.numel() - 1

    def query_range(self, first: int, stop: int) -> FrameLists:
        """The lists of query frames [first, stop) only, renumbered from 0 (the queries of those frames are
        then a chunk of q), with the frames they list unchanged (indices into the whole sequence's keys)."""
        if not 0 <= first <= stop <= self.frames:
            raise ValueError(f"query frames [{first}, {stop}) are not within the {self.frames} listed frames")
        return FrameLists.from_csr(self.indptr[first : stop + 1], self.indices)


def frame_list_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lists: FrameLists,
    tokens_per_frame: int,
    special_tokens: int,
    all_special_tokens: bool = True,
    out: Tensor | None = None,
    block_m: int = 64,
    block_n: int = 64,
    num_warps: int = 4,
    num_stages: int = 2,
    *,
    implementation: Literal["gluon", "triton"],
) -> Tensor:
    """Softmax attention of q over the keys each query frame may see, for one scene.

    q [heads, Q * T, head_dim] holds the queries of the Q frames of ``lists`` (all S frames, or a range of
    them: ``FrameLists.query_range``), k, v [heads, S * T, head_dim] the keys of all S frames (any strides with
    unit stride along head_dim), on the device of ``lists``: the frames whose patch tokens each query frame
    attends to, and with ``all_special_tokens`` every frame's special tokens; without it, the listed frames'
    special tokens only. Returns [heads, Q * T, head_dim] in q's dtype, written into ``out`` when given
    (zeros for a frame with no key at all: an empty list and no shared special tokens). ``implementation`` names the kernel: gluon (see
    ``gluon_not_supported_reasons``) or triton (see ``triton_layout_reasons``; block sizes, warps and stages
    tune it). Which one suits given inputs is covisibility attention's choice (sparse/covisibility.py)."""
    heads, length, head_dim = q.shape
    frames, key_frames = lists.frames, k.shape[1] // tokens_per_frame
    if length != frames * tokens_per_frame:
        raise ValueError(f"{length} queries are not {frames} frames of {tokens_per_frame} tokens")
    if k.shape[1] != key_frames * tokens_per_frame:
        raise ValueError(f"{k.shape[1]} keys are not a whole number of frames of {tokens_per_frame} tokens")
    if implementation == "gluon":
        reasons = gluon_not_supported_reasons(q, k, v, all_special_tokens, DeviceCapabilities.of(q.device))
    elif implementation == "triton":
        reasons = triton_layout_reasons(q, k, v, special_tokens, all_special_tokens)
    else:
        raise ValueError(f"frame_list_attention's implementation is gluon or triton, not {implementation!r}")
    if reasons:
        raise ValueError(f"the {implementation} frame_list_attention cannot take these inputs: {'; '.join(reasons)}")
    if out is not None and (out.shape != q.shape or out.dtype != q.dtype or out.stride(-1) != 1):
        raise ValueError(f"out must be like q {tuple(q.shape)} {q.dtype} with unit stride along head_dim")
    if out is None:
        out = torch.empty(heads, length, head_dim, device=q.device, dtype=q.dtype)
    if lists.indptr.device != q.device:
        raise ValueError(f"frame lists on {lists.indptr.device}, queries on {q.device}: build them with device=")
    if implementation == "gluon":
        return _attend_gluon(q, k, v, lists, tokens_per_frame, out)
    k_desc, v_desc = _descriptor(k, block_n), _descriptor(v, block_n)
    special_k_desc, special_v_desc, frame_key_offset = k_desc, v_desc, 0
    if all_special_tokens:  # packed once, so the kernel reads them as one contiguous key run
        special_k_desc, special_v_desc = (
            _descriptor(t.unflatten(1, (key_frames, tokens_per_frame))[:, :, :special_tokens].flatten(1, 2), block_n)
            for t in (k, v)
        )
        frame_key_offset = special_tokens
    grid = (-(-tokens_per_frame // block_m), frames, heads)
    _kernel()[grid](
        q, out, k_desc, v_desc, special_k_desc, special_v_desc, lists.indptr, lists.indices, lists.launch_order,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        key_frames * special_tokens if all_special_tokens else 0, tokens_per_frame, frame_key_offset,
        tokens_per_frame - frame_key_offset, math.log2(math.e) / math.sqrt(head_dim),
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
        num_warps=num_warps, num_stages=num_stages,
    )  # fmt: skip
    return out


def triton_layout_reasons(q: Tensor, k: Tensor, v: Tensor, special_tokens: int, all_special_tokens: bool) -> list[str]:
    """Why the Triton kernel cannot take these inputs' layout (it runs on any device Triton runs on, its
    interpreter included): it takes q, k, v [heads, L, head_dim] of one dtype with head_dim a power of two
    from 16 to 256, unit stride along head_dim and the other strides and start addresses 16-byte aligned
    (tensor descriptors), and special tokens to attend to when all of them are asked for. q may be shorter than
    k and v (a range of query frames)."""
    head_dim = q.shape[-1]
    tensors = (q, k, v)
    if any(t.dim() != 3 or t.dtype != q.dtype or t.shape[-1] != head_dim or t.stride(-1) != 1 for t in tensors):
        return ["q, k and v must be [heads, L, head_dim] of one dtype with unit stride along head_dim"]
    if k.shape != v.shape or k.shape[0] != q.shape[0]:
        return ["k and v must be of one shape, with q's heads"]
    reasons = []
    size = q.element_size()
    if not all(t.data_ptr() % 16 == 0 and all(s * size % 16 == 0 for s in t.stride()[:-1]) for t in tensors):
        reasons.append("its tensor descriptors need 16-byte aligned strides and start addresses")
    if head_dim not in (16, 32, 64, 128, 256):
        reasons.append(f"it takes a head dim that is a power of two from 16 to 256, not {head_dim}")
    if special_tokens == 0 and all_special_tokens:
        reasons.append("all_special_tokens asks for special tokens, and frames have none")
    return reasons


GLUON_HEAD_DIM = 64
GLUON_BLOCK_N = 128
GLUON_STAGES = 3
GLUON_CONSUMER_REGISTERS = 160
GLUON_MAX_REGISTERS = 128
"""Per-thread registers at launch: 13 warps run as 4 warpgroups, 16 x 32 x 128 fills the register file;
the producer's warpgroup then drops to 24 per thread and the consumers take the rest."""


def gluon_not_supported_reasons(
    q: Tensor, k: Tensor, v: Tensor, all_special_tokens: bool, capabilities: DeviceCapabilities
) -> list[str]:
    """Why the Gluon kernel cannot take these inputs on a device with these capabilities (none: it can). It
    takes q [heads, Q, 64] and k, v of one shape [heads, L, 64] (Q = L, or Q < L for a range of query frames),
    of one dtype (bfloat16 or float16), 16-byte aligned, on a CUDA device of compute capability 9.0 (Hopper:
    wgmma and register reallocation), fewer than 2^31 rows in all (TMA coordinates), without the shared special tokens, with Triton 3.6 or newer (Gluon's warp
    specialisation)."""
    tensors = (q, k, v)
    reasons = []
    if all_special_tokens:
        reasons.append("it does not attend to every frame's special tokens (all_special_tokens)")
    if capabilities.type != "cuda" or capabilities.compute_capability != (9, 0):
        reasons.append("it runs on Hopper GPUs (CUDA compute capability 9.0) only")
    if not capabilities.gluon:
        reasons.append("it needs Triton 3.6 or newer with Gluon")
    if any(t.dim() != 3 or t.dtype != q.dtype for t in tensors) or k.shape != v.shape or q.shape[::2] != k.shape[::2]:
        return [*reasons, "q, k and v must be [heads, L, head_dim] of one dtype, k and v of one shape"]
    if q.dtype not in HALF_PRECISION or q.shape[-1] != GLUON_HEAD_DIM or q.numel() == 0:
        reasons.append(f"it takes bfloat16 or float16 with head dim {GLUON_HEAD_DIM}, not {q.dtype} with {q.shape[-1]}")
    if any(t.data_ptr() % 16 for t in tensors) or k.numel() // GLUON_HEAD_DIM >= 2**31:
        reasons.append("its tensor descriptors need 16-byte aligned tensors of fewer than 2^31 rows")
    return reasons


def _attend_gluon(q: Tensor, k: Tensor, v: Tensor, lists: FrameLists, tokens_per_frame: int, out: Tensor) -> Tensor:
    heads, _, head_dim = q.shape
    kernel = _gluon_kernel()
    rows_per_warpgroup = kernel.ROWS.value
    grid = (-(-tokens_per_frame // (kernel.CONSUMERS.value * rows_per_warpgroup)), lists.frames, heads)
    q_desc, *q_steps = _gluon_operand(q, rows_per_warpgroup)
    k_desc, *k_steps = _gluon_operand(k, GLUON_BLOCK_N)
    v_desc, *v_steps = _gluon_operand(v, GLUON_BLOCK_N)
    kernel.frame_list_attention_kernel[grid](
        q_desc, k_desc, v_desc, *q_steps, *k_steps, *v_steps, out, out.stride(0), out.stride(1), lists.indptr,
        lists.indices, lists.launch_order, tokens_per_frame, math.log2(math.e) / math.sqrt(head_dim),
        HEAD_DIM=head_dim, BLOCK_N=GLUON_BLOCK_N, STAGES=GLUON_STAGES,
        CONSUMER_REGISTERS=GLUON_CONSUMER_REGISTERS, num_warps=4, maxnreg=GLUON_MAX_REGISTERS,
    )  # fmt: skip
    return out


def _gluon_operand(x: Tensor, block_rows: int) -> tuple[object, int, int]:
    """A 2-D TMA descriptor of x [heads, L, 64], read in [block_rows, 64] tiles swizzled for wgmma, and the steps
    from one head's origin to the next along its rows and columns. x is read where it lies when its heads are
    stacked ([heads * L, 64] with any aligned row stride: contiguous q and k) or side by side ([L, heads * 64]:
    v as a view of the qkv projection); any other layout is first copied to stacked rows."""
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    heads, length, head_dim = x.shape
    row_stride = x.stride(1)
    aligned = x.stride(2) == 1 and row_stride * x.element_size() % 16 == 0
    if aligned and heads > 1 and x.stride(0) == head_dim and row_stride >= heads * head_dim:  # side by side
        shape, head_steps = [length, heads * head_dim], (0, head_dim)
    else:
        if not (aligned and (heads == 1 or x.stride(0) == length * row_stride)):
            x, row_stride = x.contiguous(), head_dim
        shape, head_steps = [heads * length, head_dim], (length, 0)
    block = [block_rows, head_dim]
    layout = gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16 if x.dtype == torch.bfloat16 else gl.float16)
    return TensorDescriptor(x, shape, [row_stride, 1], block, layout), *head_steps


@functools.cache
def _gluon_kernel():
    from vggt_sparse_ns.layers.kernels import _frame_list_attention_gluon

    return _frame_list_attention_gluon


def _descriptor(x: Tensor, block_n: int):
    """A tensor descriptor of x [heads, tokens, head_dim] read in [1, block_n, head_dim] tiles."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    return TensorDescriptor(x, list(x.shape), list(x.stride()), [1, block_n, x.shape[-1]])


@functools.cache
def _kernel():
    from vggt_sparse_ns.layers.kernels import _frame_list_attention_triton

    return _frame_list_attention_triton.frame_list_attention_kernel
