"""Triton source of frame_list_attention (imported only when the kernel runs, so Triton stays optional)."""

import triton
import triton.language as tl


@triton.jit
def attend_block(
    q, acc, row_max, row_sum, k_desc, v_desc, head, row, valid, scale_log2,
    BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr,
):  # fmt: skip
    # The online-softmax update for the key block at token ``row`` of ``head`` (keys, values [BLOCK_N, HEAD_DIM]
    # loaded through the descriptors; valid [BLOCK_N], read only when MASKED: full blocks skip the select,
    # which is worth about 15% of the kernel's time).
    keys = k_desc.load([head, row, 0]).reshape(BLOCK_N, HEAD_DIM)
    values = v_desc.load([head, row, 0]).reshape(BLOCK_N, HEAD_DIM)
    scores = tl.dot(q, tl.trans(keys))
    if MASKED:
        scores = tl.where(valid[None, :], scores, float("-inf"))
    new_max = tl.maximum(row_max, tl.max(scores, 1) * scale_log2)
    weights = tl.exp2(scores * scale_log2 - new_max[:, None])
    rescale = tl.exp2(row_max - new_max)
    acc = acc * rescale[:, None] + tl.dot(weights.to(values.dtype), values)
    return acc, new_max, row_sum * rescale + tl.sum(weights, 1)


@triton.jit
def frame_list_attention_kernel(
    q_ptr, out_ptr, k_desc, v_desc, special_k_desc, special_v_desc, indptr_ptr, indices_ptr, order_ptr,
    stride_qh, stride_ql, stride_oh, stride_ol, special_keys, tokens_per_frame, frame_key_offset, frame_keys,
    scale_log2, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    # One program: BLOCK_M queries of one frame and one head. Keys come as [1, BLOCK_N, HEAD_DIM]
    # tiles of [heads, tokens, HEAD_DIM] tensors through tensor descriptors (TMA on Hopper).
    frame = tl.load(order_ptr + tl.program_id(1))
    head = tl.program_id(2)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_valid = rows < tokens_per_frame
    query_positions = frame * tokens_per_frame + rows
    dims = tl.arange(0, HEAD_DIM)
    q_offsets = head.to(tl.int64) * stride_qh + query_positions[:, None] * stride_ql + dims[None, :]
    q = tl.load(q_ptr + q_offsets, mask=row_valid[:, None], other=0.0)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    row_max = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    row_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    columns = tl.arange(0, BLOCK_N)
    for start in range(0, special_keys, BLOCK_N):
        acc, row_max, row_sum = attend_block(
            q, acc, row_max, row_sum, special_k_desc, special_v_desc, head, start, start + columns < special_keys,
            scale_log2, BLOCK_N, HEAD_DIM, True,
        )  # fmt: skip
    # Each listed frame's keys (tokens frame_key_offset onwards): its full BLOCK_N tiles unmasked, then
    # the partial tile at the frame's end masked.
    full_blocks = frame_keys // BLOCK_N
    tail = full_blocks * BLOCK_N
    first = tl.load(indptr_ptr + frame)
    listed = (tl.load(indptr_ptr + frame + 1) - first).to(tl.int32)
    for slot in range(0, listed):
        frame_start = tl.load(indices_ptr + first + slot).to(tl.int32) * tokens_per_frame + frame_key_offset
        for block in range(0, full_blocks):
            acc, row_max, row_sum = attend_block(
                q, acc, row_max, row_sum, k_desc, v_desc, head, frame_start + block * BLOCK_N, columns,
                scale_log2, BLOCK_N, HEAD_DIM, False,
            )  # fmt: skip
        if tail < frame_keys:
            acc, row_max, row_sum = attend_block(
                q, acc, row_max, row_sum, k_desc, v_desc, head, frame_start + tail, tail + columns < frame_keys,
                scale_log2, BLOCK_N, HEAD_DIM, True,
            )  # fmt: skip
    out = acc / tl.maximum(row_sum, 1e-30)[:, None]  # a row with any key has row_sum >= 1; none: zeros
    out_offsets = head.to(tl.int64) * stride_oh + query_positions[:, None] * stride_ol + dims[None, :]
    tl.store(out_ptr + out_offsets, out.to(out_ptr.dtype.element_ty), mask=row_valid[:, None])
