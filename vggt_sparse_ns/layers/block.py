"""Pre-norm transformer block (DINOv2 layout: norm1, attn, ls1, norm2, mlp, ls2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vggt_sparse_ns.layers.attention import AttendFn, Attention, NormImplementation, sdpa_attend
from vggt_sparse_ns.layers.implementations import Implementation, Operation, runs_everywhere
from vggt_sparse_ns.layers.kernels import DeviceCapabilities, gradient_reasons, triton_reasons
from vggt_sparse_ns.layers.kernels.layer_norm import layer_norm_to
from vggt_sparse_ns.layers.rope import RopeTable

QueryChunkAttendFn = Callable[[Tensor, Tensor, Tensor, slice], Tensor]
"""(q of a chunk of queries [B, heads, n, head_dim], k and v of all L tokens, the chunk's positions along the
sequence) -> the chunk's output [B, heads, n, head_dim], the same rows as attending all queries would give."""
ChunkReader = Callable[[slice, Tensor, Tensor], None]
"""(positions, before, after): a chunk's positions along the sequence and its tokens [B, n, dim] before and
after a block."""


class Mlp(nn.Module):
    """Two linear layers with a GELU between them."""

    def __init__(
        self, in_features: int, hidden_features: int, out_features: int | None = None, bias: bool = True
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Learned per-channel scale of a residual branch."""

    def __init__(self, dim: int, init_values: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def add_residual(x: Tensor, branch: Tensor, scale: nn.Module, in_place: bool = False) -> Tensor:
    """x + scale(branch). With a LayerScale this is one addcmul (one pass over x instead of a scaled
    copy of the branch and an add), in place when asked."""
    if isinstance(scale, LayerScale):
        return x.addcmul_(branch, scale.gamma) if in_place else torch.addcmul(x, branch, scale.gamma)
    return x.add_(scale(branch)) if in_place else x + scale(branch)


@dataclass(frozen=True)
class PreNormInputs:
    """A pre-norm's input x, its LayerNorm, and the dtype the next linear layer computes in (the autocast
    dtype of x's device; None without autocast)."""

    x: Tensor
    norm: nn.LayerNorm
    dtype: torch.dtype | None
    capabilities: DeviceCapabilities


def _one_pass_reasons(inputs: PreNormInputs) -> list[str]:
    reasons = ["it writes the autocast dtype, and autocast is off"] if inputs.dtype is None else []
    reasons += triton_reasons(inputs.capabilities, inputs.dtype or inputs.x.dtype)
    return reasons + gradient_reasons(inputs.x, inputs.norm)


PRE_NORM = Operation[PreNormInputs, Callable[[PreNormInputs], Tensor]](
    "the pre-norm (LayerNorm before a linear layer)",
    (
        Implementation("triton", lambda i: layer_norm_to(i.x, i.norm, i.dtype), _one_pass_reasons),
        Implementation("torch", lambda i: i.norm(i.x), runs_everywhere),
    ),
)
"""triton: the LayerNorm written in the autocast dtype in one pass (kernels/layer_norm.py); CUDA, half-precision
autocast, inference only (the kernel has no backward). torch: nn.LayerNorm (fp32 under autocast; the linear
layer casts it)."""


def pre_norm(norm: nn.LayerNorm, x: Tensor, implementation: NormImplementation = "auto") -> Tensor:
    """norm(x) for a linear layer to read, by the ``PRE_NORM`` implementation chosen for x."""
    autocast = torch.is_autocast_enabled(x.device.type)
    dtype = torch.get_autocast_dtype(x.device.type) if autocast else None
    inputs = PreNormInputs(x, norm, dtype, DeviceCapabilities.of(x.device))
    return PRE_NORM.choose(implementation, inputs).run(inputs)


class Block(nn.Module):
    """x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        init_values: float | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(
        self,
        x: Tensor,
        rope: RopeTable | None = None,
        attend: AttendFn = sdpa_attend,
        token_chunk: int | None = None,
        read_chunk: ChunkReader | None = None,
        norm_implementation: NormImplementation = "auto",
        attend_query_chunk: QueryChunkAttendFn | None = None,
        heads_buffers: list[Tensor] | None = None,
    ) -> Tensor:
        """x [B, L, dim]. With ``token_chunk``, the per-token work (norms, projections, MLP) runs
        on chunks of the sequence so that only q, k, v exist for all L tokens at once; x is then
        updated in place (inference only) and returned. With ``attend_query_chunk`` as well, attention runs by
        the same chunks of queries (``attend`` is then unused): only k and v exist for all tokens, and each
        chunk's q is computed again from its tokens, just before its attention. ``read_chunk`` is given each
        chunk's tokens before and after the block as soon as the chunk is done, so that a reader of both (the
        heads' taps) needs no copy of the whole input. ``norm_implementation`` chooses how the norms run
        (``PRE_NORM``, ``QK_NORM_ROPE``). ``heads_buffers`` (with ``attend_query_chunk``): a list, empty at first,
        that keeps the tensors of the whole sequence's k and v for the next block given the same list, so that
        blocks run one after the other reuse them instead of allocating them again (the caching allocator could
        otherwise have split the freed ones for smaller tensors and need new device memory for the next)."""
        norms = norm_implementation
        if token_chunk is None or token_chunk >= x.shape[1]:
            out = add_residual(x, self.attn(pre_norm(self.norm1, x, norms), rope, attend, norms), self.ls1)
            out = add_residual(out, self.mlp(pre_norm(self.norm2, out, norms)), self.ls2)
            if read_chunk is not None:
                read_chunk(slice(0, x.shape[1]), x, out)
            return out
        chunks = [slice(start, min(start + token_chunk, x.shape[1])) for start in range(0, x.shape[1], token_chunk)]
        if attend_query_chunk is None:  # q, k, v are freed as soon as the attention is done
            out, k, v = attend(*self._chunked_heads(x, rope, chunks, norms, keep_queries=True)), None, None
        else:  # k and v stay for every chunk's queries
            out, (_, k, v) = (
                None,
                self._chunked_heads(x, rope, chunks, norms, keep_queries=False, buffers=heads_buffers),
            )
        for chunk in chunks:
            piece = x[:, chunk]
            if out is not None:
                chunk_out = out[:, :, chunk]
            else:  # the chunk's queries again (with its k, v: the same projection, so the same bits), from its tokens
                chunk_q = self.attn.heads(pre_norm(self.norm1, piece, norms), rope, norms)[0]
                chunk_out = attend_query_chunk(chunk_q, k, v, chunk)
                del chunk_q
            before = piece.clone() if read_chunk is not None else None
            add_residual(piece, self.attn.merge(chunk_out), self.ls1, in_place=True)
            del chunk_out
            add_residual(piece, self.mlp(pre_norm(self.norm2, piece, norms)), self.ls2, in_place=True)
            if read_chunk is not None:
                read_chunk(chunk, before, piece)
        return x

    def _chunked_heads(
        self,
        x: Tensor,
        rope: RopeTable | None,
        chunks: list[slice],
        norms: NormImplementation,
        keep_queries: bool,
        buffers: list[Tensor] | None = None,
    ) -> tuple[Tensor | None, Tensor, Tensor]:
        """q (None unless ``keep_queries``), k, v for the whole sequence, filled chunk by chunk into preallocated
        tensors: those in ``buffers`` where they match, else new ones, which ``buffers`` then keeps. Each chunk must
        be a whole number of RoPE frames."""
        length = x.shape[1]
        kept = slice(0 if keep_queries else 1, 3)
        full: list[Tensor] = []
        for chunk in chunks:
            parts = self.attn.heads(pre_norm(self.norm1, x[:, chunk], norms), rope, norms)[kept]
            if not full:
                batch, heads, _, head_dim = parts[0].shape
                shapes = [((batch, heads, length, head_dim), t.dtype, t.device) for t in parts]
                if buffers is not None and [(tuple(b.shape), b.dtype, b.device) for b in buffers] == shapes:
                    full = list(buffers)
                else:
                    full = [x.new_empty(shape, dtype=dtype) for shape, dtype, _ in shapes]
                    if buffers is not None:
                        buffers[:] = full
            for whole, part in zip(full, parts, strict=True):
                whole[:, :, chunk] = part
            del parts, part  # not alive while the next chunk's q, k, v are computed
        return (full[0] if keep_queries else None), full[-2], full[-1]
