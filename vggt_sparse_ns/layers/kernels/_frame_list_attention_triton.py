"""Triton source of frame_list_attention (imported only when the kernel runs, so Triton stays optional)."""

import triton
import triton.language as tl


@triton.jit
def attend_block(q, acc, row_max, row_sum, k_head, v_head, positions, valid, stride_kl, stride_vl,
                 scale_log2, HEAD_DIM: tl.constexpr):  # fmt: skip
    # One key block at token positions [BLOCK_N] (int64): the online-softmax update.
    dims = tl.arange(0, HEAD_DIM)
    keys = tl.load(k_head + positions[None, :] * stride_kl + dims[:, None], mask=valid[None, :], other=0.0)
    scores = tl.dot(q, keys) * scale_log2
    scores = tl.where(valid[None, :], scores, float("-inf"))
    new_max = tl.maximum(row_max, tl.max(scores, 1))
    weights = tl.exp2(scores - new_max[:, None])
    rescale = tl.exp2(row_max - new_max)
    values = tl.load(v_head + positions[:, None] * stride_vl + dims[None, :], mask=valid[:, None], other=0.0)
    acc = acc * rescale[:, None] + tl.dot(weights.to(values.dtype), values)
    return acc, new_max, row_sum * rescale + tl.sum(weights, 1)


@triton.jit
def frame_list_attention_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, indptr_ptr, indices_ptr, order_ptr,
    stride_qh, stride_ql, stride_kh, stride_kl, stride_vh, stride_vl, stride_oh, stride_ol,
    frames, tokens_per_frame, patch_tokens, scale_log2,
    SPECIAL_TOKENS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    frame = tl.load(order_ptr + tl.program_id(1))
    head = tl.program_id(2).to(tl.int64)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_valid = rows < tokens_per_frame
    query_positions = frame * tokens_per_frame + rows
    dims = tl.arange(0, HEAD_DIM)
    q_offsets = head * stride_qh + query_positions[:, None] * stride_ql + dims[None, :]
    q = tl.load(q_ptr + q_offsets, mask=row_valid[:, None], other=0.0)
    k_head = k_ptr + head * stride_kh
    v_head = v_ptr + head * stride_vh
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    special_keys = frames * SPECIAL_TOKENS
    for start in range(0, special_keys, BLOCK_N):
        columns = start + tl.arange(0, BLOCK_N)
        owner = (columns // SPECIAL_TOKENS).to(tl.int64)
        positions = owner * tokens_per_frame + columns % SPECIAL_TOKENS
        acc, row_max, row_sum = attend_block(q, acc, row_max, row_sum, k_head, v_head, positions,
                                             columns < special_keys, stride_kl, stride_vl, scale_log2, HEAD_DIM)  # fmt: skip
    first = tl.load(indptr_ptr + frame)
    patch_keys = (tl.load(indptr_ptr + frame + 1) - first) * patch_tokens
    for start in range(0, patch_keys, BLOCK_N):
        columns = start + tl.arange(0, BLOCK_N)
        valid = columns < patch_keys
        key_frame = tl.load(indices_ptr + first + columns // patch_tokens, mask=valid, other=0)
        positions = key_frame * tokens_per_frame + SPECIAL_TOKENS + columns % patch_tokens
        acc, row_max, row_sum = attend_block(q, acc, row_max, row_sum, k_head, v_head, positions, valid,
                                             stride_kl, stride_vl, scale_log2, HEAD_DIM)  # fmt: skip
    out = acc / row_sum[:, None]
    out_offsets = head * stride_oh + query_positions[:, None] * stride_ol + dims[None, :]
    tl.store(out_ptr + out_offsets, out.to(out_ptr.dtype.element_ty), mask=row_valid[:, None])
