"""Gluon source of the warp-specialised frame-list attention (imported only when it runs, so Triton stays
optional). Dense attention is the case of one frame that lists itself.

One program: CONSUMERS x 64 query rows of one query frame and one head. The keys are the tokens of the
frames listed for that frame, walked frame by frame in BLOCK_N-token tiles (each frame's last tile
masked past its end). A producer warp streams the key and value tiles into a STAGES-deep ring by TMA;
each consumer warpgroup owns 64 query rows and, in its turn, issues S = Q K^T of the next tile and
O += P V of the previous one, hands the turn on, and computes its softmax while the next warpgroup's
products run (ping-pong); a warpgroup whose rows lie wholly past the frame's end only passes the turns
on. Each of q, k, v is read through a 2-D descriptor where it lies: its heads stacked ([heads * S * T, 64])
or side by side ([S * T, heads * 64], v as a view of the qkv projection), a head's origin given by its
head's steps along both axes. A tile that runs past a frame reads the next frame's rows, which are masked
(keys) or never stored (queries).
"""

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)

ROWS: gl.constexpr = gl.constexpr(64)
"""Query rows per consumer warpgroup (one wgmma M)."""
CONSUMERS: gl.constexpr = gl.constexpr(3)
"""Consumer warpgroups per program, taking turns on the tensor cores (three: 524 TFLOP/s at the dense
200-frame shape; two: 463 in a probe, docs/benchmarks/README.md)."""


@gluon.jit
def _producer(buffers, barriers, problem, which: gl.constexpr, STAGES: gl.constexpr, BLOCK_N: gl.constexpr,
              HEAD_DIM: gl.constexpr):  # fmt: skip
    # Worker partitions share one signature, so `which` and HEAD_DIM are the consumers' and unused here.
    q_desc, k_desc, v_desc, q_smem, k_smem, v_smem = buffers
    q_ready, k_ready, v_ready, kv_empty, turn = barriers
    out_ptr, out_strides, indices_ptr, first, listed, tokens, origins, frame_row, query_row, scale_log2 = problem
    q_origin, k_origin, v_origin = origins
    q_row, q_column = q_origin
    k_row, k_column = k_origin
    v_row, v_column = v_origin
    mbarrier.expect(q_ready, CONSUMERS * q_desc.block_type.nbytes)
    for c in gl.static_range(CONSUMERS):
        tma.async_copy_global_to_shared(q_desc, [q_row + query_row + c * ROWS, q_column], q_ready, q_smem.index(c))
    tiles_per_frame = gl.cdiv(tokens, BLOCK_N)
    for slot in range(listed):
        key_row = gl.load(indices_ptr + first + slot).to(gl.int32) * tokens
        for tile in range(tiles_per_frame):
            step = slot * tiles_per_frame + tile
            ring = step % STAGES
            mbarrier.wait(kv_empty.index(ring), ((step // STAGES) & 1) ^ 1)  # the ring starts empty
            row = key_row + tile * BLOCK_N
            mbarrier.expect(k_ready.index(ring), k_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(k_desc, [k_row + row, k_column], k_ready.index(ring), k_smem.index(ring))
            mbarrier.expect(v_ready.index(ring), v_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(v_desc, [v_row + row, v_column], v_ready.index(ring), v_smem.index(ring))


@gluon.jit
def _attend_tile(q, k_smem, v_smem, k_ready, v_ready, kv_empty, turn, s, row_max, row_sum, p, o, step, valid,
                 scale_log2, which: gl.constexpr, STAGES: gl.constexpr, BLOCK_N: gl.constexpr,
                 s_layout: gl.constexpr, o_layout: gl.constexpr, p_layout: gl.constexpr,
                 MASKED: gl.constexpr):  # fmt: skip
    # In this warpgroup's turn: S = Q K^T of tile `step` and O += P V of the tile before (at step 0, P is
    # zero and the V tile any loaded one), issued back to back; then the turn passes on, and the softmax
    # of S runs while the next warpgroup's products do. MASKED: only the first `valid` keys exist.
    ring = step % STAGES
    before = gl.maximum(step - 1, 0)
    mbarrier.wait(turn.index(which), step & 1)
    mbarrier.wait(k_ready.index(ring), (step // STAGES) & 1)
    s_token = warpgroup_mma(q, k_smem.index(ring).permute((1, 0)), s, use_acc=False, is_async=True)
    mbarrier.wait(v_ready.index(before % STAGES), (before // STAGES) & 1)
    o_token = warpgroup_mma(p, v_smem.index(before % STAGES), o, is_async=True)
    mbarrier.arrive(turn.index((which + 1) % CONSUMERS))
    s, o = warpgroup_mma_wait(0, deps=(s_token, o_token))
    mbarrier.arrive(kv_empty.index(before % STAGES), pred=step > 0)
    if MASKED:
        columns = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        s = gl.where(gl.expand_dims(columns < valid, 0), s, float("-inf"))
    new_max = gl.maximum(row_max, gl.max(s, axis=1) * scale_log2)
    rescale = gl.exp2(row_max - new_max)
    weights = gl.exp2(s * scale_log2 - gl.expand_dims(new_max, 1))
    row_sum = row_sum * rescale + gl.sum(weights, axis=1)
    o = o * gl.expand_dims(gl.convert_layout(rescale, gl.SliceLayout(1, o_layout)), 1)
    return s, new_max, row_sum, gl.convert_layout(weights.to(q.dtype), p_layout), o


@gluon.jit
def _consumer(buffers, barriers, problem, which: gl.constexpr, STAGES: gl.constexpr, BLOCK_N: gl.constexpr,
              HEAD_DIM: gl.constexpr):  # fmt: skip
    out_ptr, out_strides, indices_ptr, first, listed, tokens, origins, frame_row, query_row, scale_log2 = problem
    if query_row + which * ROWS - frame_row < tokens:
        _attend_rows(buffers, barriers, problem, which, STAGES, BLOCK_N, HEAD_DIM)
    else:  # every row past the frame's end: keep the turns and the ring going, with no products
        _pass_turns(barriers, listed * gl.cdiv(tokens, BLOCK_N), which, STAGES)


@gluon.jit
def _pass_turns(barriers, steps, which: gl.constexpr, STAGES: gl.constexpr):
    # The arrivals of _attend_tile and of the last P V product, in the same order.
    q_ready, k_ready, v_ready, kv_empty, turn = barriers
    if steps > 0:
        for step in range(steps + 1):
            mbarrier.wait(turn.index(which), step & 1)
            mbarrier.arrive(turn.index((which + 1) % CONSUMERS))
            mbarrier.arrive(kv_empty.index(gl.maximum(step - 1, 0) % STAGES), pred=(step > 0) & (step < steps))


@gluon.jit
def _attend_rows(buffers, barriers, problem, which: gl.constexpr, STAGES: gl.constexpr, BLOCK_N: gl.constexpr,
                 HEAD_DIM: gl.constexpr):  # fmt: skip
    q_desc, k_desc, v_desc, q_smem, k_smem, v_smem = buffers
    q_ready, k_ready, v_ready, kv_empty, turn = barriers
    out_ptr, out_strides, indices_ptr, first, listed, tokens, origins, frame_row, query_row, scale_log2 = problem
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HEAD_DIM, 16]
    )
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    q = q_smem.index(which)
    full_tiles = tokens // BLOCK_N
    partial = tokens - full_tiles * BLOCK_N

    s = gl.zeros([ROWS, BLOCK_N], gl.float32, s_layout)
    row_max = gl.full([ROWS], float("-inf"), gl.float32, gl.SliceLayout(1, s_layout))
    row_sum = gl.zeros([ROWS], gl.float32, gl.SliceLayout(1, s_layout))
    p = gl.zeros([ROWS, BLOCK_N], q.dtype, p_layout)
    o = gl.zeros([ROWS, HEAD_DIM], gl.float32, o_layout)
    mbarrier.wait(q_ready, 0)
    step = 0
    for _slot in range(listed):
        for _tile in range(full_tiles):
            s, row_max, row_sum, p, o = _attend_tile(
                q, k_smem, v_smem, k_ready, v_ready, kv_empty, turn, s, row_max, row_sum, p, o, step, BLOCK_N,
                scale_log2, which, STAGES, BLOCK_N, s_layout, o_layout, p_layout, False,
            )  # fmt: skip
            step += 1
        if partial > 0:  # the frame's last tile, its keys past the frame's end masked
            s, row_max, row_sum, p, o = _attend_tile(
                q, k_smem, v_smem, k_ready, v_ready, kv_empty, turn, s, row_max, row_sum, p, o, step, partial,
                scale_log2, which, STAGES, BLOCK_N, s_layout, o_layout, p_layout, True,
            )  # fmt: skip
            step += 1

    if step > 0:  # the last tile's P V product
        last = (step - 1) % STAGES
        mbarrier.wait(turn.index(which), step & 1)
        mbarrier.wait(v_ready.index(last), ((step - 1) // STAGES) & 1)
        o = warpgroup_mma(p, v_smem.index(last), o, is_async=True)
        mbarrier.arrive(turn.index((which + 1) % CONSUMERS))
        o = warpgroup_mma_wait(0, deps=(o,))
    # A row with any key has row_sum >= 1; a frame with no listed frame gets zeros.
    o = o / gl.expand_dims(gl.convert_layout(gl.maximum(row_sum, 1e-30), gl.SliceLayout(1, o_layout)), 1)
    head_stride, row_stride, head = out_strides
    rows = query_row + which * ROWS + gl.arange(0, ROWS, layout=gl.SliceLayout(1, o_layout))  # within the head
    dims = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    offsets = gl.expand_dims(rows.to(gl.int64) * row_stride, 1) + gl.expand_dims(dims, 0) + head * head_stride
    in_frame = gl.expand_dims(rows - frame_row < tokens, 1)
    gl.store(out_ptr + offsets, o.to(out_ptr.dtype.element_ty), mask=in_frame)


@gluon.jit
def frame_list_attention_kernel(q_desc, k_desc, v_desc, q_head_rows, q_head_columns, k_head_rows, k_head_columns,
                                v_head_rows, v_head_columns, out_ptr, out_head_stride, out_row_stride, indptr_ptr,
                                indices_ptr, order_ptr, tokens, scale_log2, HEAD_DIM: gl.constexpr,
                                BLOCK_N: gl.constexpr,
                                STAGES: gl.constexpr, CONSUMER_REGISTERS: gl.constexpr):  # fmt: skip
    # A head's origin in each descriptor: its head index times the steps between heads along rows and columns.
    dtype: gl.constexpr = q_desc.dtype
    frame = gl.load(order_ptr + gl.program_id(1)).to(gl.int32)
    head = gl.program_id(2)
    origins = (
        (head * q_head_rows, head * q_head_columns),
        (head * k_head_rows, head * k_head_columns),
        (head * v_head_rows, head * v_head_columns),
    )
    frame_row = frame * tokens
    query_row = frame_row + gl.program_id(0) * (CONSUMERS * ROWS)
    first = gl.load(indptr_ptr + frame)
    listed = (gl.load(indptr_ptr + frame + 1) - first).to(gl.int32)
    out_strides = (out_head_stride, out_row_stride, head.to(gl.int64))
    q_smem = gl.allocate_shared_memory(dtype, [CONSUMERS, ROWS, HEAD_DIM], q_desc.layout)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_DIM], v_desc.layout)
    q_ready = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    kv_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    turn = gl.allocate_shared_memory(gl.int64, [CONSUMERS, 1], mbarrier.MBarrierLayout())
    mbarrier.init(q_ready, count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(kv_empty.index(i), count=CONSUMERS)  # a slot is free once every consumer is done with it
    for i in gl.static_range(CONSUMERS):
        mbarrier.init(turn.index(i), count=1)
    mbarrier.arrive(turn.index(0))  # consumer 0 has the first turn
    fence_async_shared()
    buffers = (q_desc, k_desc, v_desc, q_smem, k_smem, v_smem)
    barriers = (q_ready, k_ready, v_ready, kv_empty, turn)
    problem = (out_ptr, out_strides, indices_ptr, first, listed, tokens, origins, frame_row, query_row, scale_log2)
    gl.warp_specialize(
        [
            (_consumer, (buffers, barriers, problem, 0, STAGES, BLOCK_N, HEAD_DIM)),
            (_consumer, (buffers, barriers, problem, 1, STAGES, BLOCK_N, HEAD_DIM)),
            (_consumer, (buffers, barriers, problem, 2, STAGES, BLOCK_N, HEAD_DIM)),
            (_producer, (buffers, barriers, problem, 0, STAGES, BLOCK_N, HEAD_DIM)),
        ],
        [4, 4, 1],
        [CONSUMER_REGISTERS, CONSUMER_REGISTERS, 24],
    )
