"""Gluon source of dense_attention (imported only when the kernel runs, so Triton stays optional).

One program: CONSUMERS x 64 query rows of one (batch, head) sequence. A producer warp streams the key and
value tiles into a STAGES-deep ring by TMA; each consumer warpgroup owns 64 rows and takes its turn to
issue its tensor-core work (S = Q K^T of this tile, then O += P V of the previous one), then hands the
turn on and computes its softmax while the next warpgroup's products run (ping-pong). Rows are the
flattened [batch * heads * seq_len] tokens, so a tile at the end of a sequence may read the next one's
rows: those keys are masked, those queries are never stored.
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
def _mask_past_end(s, tile, seq_len, BLOCK_N: gl.constexpr, s_layout: gl.constexpr):
    columns = tile * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
    return gl.where(gl.expand_dims(columns < seq_len, 0), s, float("-inf"))


@gluon.jit
def _producer(buffers, barriers, problem, which: gl.constexpr, STAGES: gl.constexpr, BLOCK_N: gl.constexpr,
              HEAD_DIM: gl.constexpr):  # fmt: skip
    q_desc, k_desc, v_desc, q_smem, k_smem, v_smem = buffers
    q_ready, k_ready, v_ready, kv_empty, turn = barriers
    out_ptr, seq_len, first_row, first_query, scale_log2 = problem
    mbarrier.expect(q_ready, CONSUMERS * q_desc.block_type.nbytes)
    for c in gl.static_range(CONSUMERS):
        tma.async_copy_global_to_shared(q_desc, [first_row + first_query + c * ROWS, 0], q_ready, q_smem.index(c))
    for tile in range(gl.cdiv(seq_len, BLOCK_N)):
        slot = tile % STAGES
        mbarrier.wait(kv_empty.index(slot), ((tile // STAGES) & 1) ^ 1)  # the ring starts empty
        row = first_row + tile * BLOCK_N
        mbarrier.expect(k_ready.index(slot), k_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(k_desc, [row, 0], k_ready.index(slot), k_smem.index(slot))
        mbarrier.expect(v_ready.index(slot), v_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(v_desc, [row, 0], v_ready.index(slot), v_smem.index(slot))


@gluon.jit
def _attend_tile(q, k_smem, v_smem, k_ready, v_ready, kv_empty, turn, s, row_max, row_sum, p, o, tile, seq_len,
                 scale_log2, which: gl.constexpr, STAGES: gl.constexpr,
                 BLOCK_N: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr, p_layout: gl.constexpr,
                 MASKED: gl.constexpr):  # fmt: skip
    # In this warpgroup's turn: S = Q K^T of this tile and O += P V of the previous one, issued back to back;
    # then the turn passes on, and the softmax of S runs while the next warpgroup's products do.
    slot = tile % STAGES
    previous = (tile - 1) % STAGES
    mbarrier.wait(turn.index(which), tile & 1)
    mbarrier.wait(k_ready.index(slot), (tile // STAGES) & 1)
    s_token = warpgroup_mma(q, k_smem.index(slot).permute((1, 0)), s, use_acc=False, is_async=True)
    mbarrier.wait(v_ready.index(previous), ((tile - 1) // STAGES) & 1)
    o_token = warpgroup_mma(p, v_smem.index(previous), o, is_async=True)
    mbarrier.arrive(turn.index((which + 1) % CONSUMERS))
    s, o = warpgroup_mma_wait(0, deps=(s_token, o_token))
    mbarrier.arrive(kv_empty.index(previous))
    if MASKED:
        s = _mask_past_end(s, tile, seq_len, BLOCK_N, s_layout)
    new_max = gl.maximum(row_max, gl.max(s, axis=1) * scale_log2)
    rescale = gl.exp2(row_max - new_max)
    weights = gl.exp2(s * scale_log2 - gl.expand_dims(new_max, 1))
    row_sum = row_sum * rescale + gl.sum(weights, axis=1)
    o = o * gl.expand_dims(gl.convert_layout(rescale, gl.SliceLayout(1, o_layout)), 1)
    return s, new_max, row_sum, gl.convert_layout(weights.to(q.dtype), p_layout), o


@gluon.jit
def _consumer(buffers, barriers, problem, which: gl.constexpr, STAGES: gl.constexpr, BLOCK_N: gl.constexpr,
              HEAD_DIM: gl.constexpr):  # fmt: skip
    q_desc, k_desc, v_desc, q_smem, k_smem, v_smem = buffers
    q_ready, k_ready, v_ready, kv_empty, turn = barriers
    out_ptr, seq_len, first_row, first_query, scale_log2 = problem
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, HEAD_DIM, 16]
    )
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    q = q_smem.index(which)
    tiles = gl.cdiv(seq_len, BLOCK_N)
    partial = seq_len % BLOCK_N != 0

    # Tile 0: scores only (there is no previous P V product yet).
    mbarrier.wait(q_ready, 0)
    mbarrier.wait(turn.index(which), 0)
    mbarrier.wait(k_ready.index(0), 0)
    s = gl.zeros([ROWS, BLOCK_N], gl.float32, s_layout)
    s = warpgroup_mma(q, k_smem.index(0).permute((1, 0)), s, use_acc=False, is_async=True)
    mbarrier.arrive(turn.index((which + 1) % CONSUMERS))
    s = warpgroup_mma_wait(0, deps=(s,))
    if partial and tiles == 1:
        s = _mask_past_end(s, 0, seq_len, BLOCK_N, s_layout)
    row_max = gl.max(s, axis=1) * scale_log2
    weights = gl.exp2(s * scale_log2 - gl.expand_dims(row_max, 1))
    row_sum = gl.sum(weights, axis=1)
    p = gl.convert_layout(weights.to(q.dtype), p_layout)
    o = gl.zeros([ROWS, HEAD_DIM], gl.float32, o_layout)

    for tile in range(1, seq_len // BLOCK_N):
        s, row_max, row_sum, p, o = _attend_tile(
            q, k_smem, v_smem, k_ready, v_ready, kv_empty, turn, s, row_max, row_sum, p, o, tile, seq_len,
            scale_log2, which, STAGES, BLOCK_N, s_layout, o_layout, p_layout, False,
        )  # fmt: skip
    if partial and tiles > 1:  # the sequence's last, partial tile: its columns past the end masked
        s, row_max, row_sum, p, o = _attend_tile(
            q, k_smem, v_smem, k_ready, v_ready, kv_empty, turn, s, row_max, row_sum, p, o, tiles - 1, seq_len,
            scale_log2, which, STAGES, BLOCK_N, s_layout, o_layout, p_layout, True,
        )  # fmt: skip

    # The last tile's P V product, then normalise and store this warpgroup's rows.
    last = (tiles - 1) % STAGES
    mbarrier.wait(turn.index(which), tiles & 1)
    mbarrier.wait(v_ready.index(last), ((tiles - 1) // STAGES) & 1)
    o = warpgroup_mma(p, v_smem.index(last), o, is_async=True)
    mbarrier.arrive(turn.index((which + 1) % CONSUMERS))
    o = warpgroup_mma_wait(0, deps=(o,))
    mbarrier.arrive(kv_empty.index(last))
    o = o / gl.expand_dims(gl.convert_layout(row_sum, gl.SliceLayout(1, o_layout)), 1)
    rows = first_query + which * ROWS + gl.arange(0, ROWS, layout=gl.SliceLayout(1, o_layout))
    dims = gl.arange(0, HEAD_DIM, layout=gl.SliceLayout(0, o_layout))
    offsets = gl.expand_dims((first_row + rows).to(gl.int64) * HEAD_DIM, 1) + gl.expand_dims(dims, 0)
    gl.store(out_ptr + offsets, o.to(out_ptr.dtype.element_ty), mask=gl.expand_dims(rows < seq_len, 1))


@gluon.jit
def dense_attention_kernel(q_desc, k_desc, v_desc, out_ptr, seq_len, scale_log2, HEAD_DIM: gl.constexpr,
                           BLOCK_N: gl.constexpr, STAGES: gl.constexpr, CONSUMER_REGISTERS: gl.constexpr):  # fmt: skip
    dtype: gl.constexpr = q_desc.dtype
    first_row = gl.program_id(1) * seq_len
    first_query = gl.program_id(0) * (CONSUMERS * ROWS)
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
    problem = (out_ptr, seq_len, first_row, first_query, scale_log2)
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
