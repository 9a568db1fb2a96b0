"""A global block run by chunks of queries (k, v for all tokens, q and the output per chunk) updates its tokens
and hands the taps' reader what the run with all queries at once does, and on the GPU it holds less memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vggt_sparse_ns.layers.block import Block

TOKENS, CHUNK = 96, 32


def block_and_tokens(device: str = "cpu") -> tuple[Block, torch.Tensor]:
    torch.manual_seed(0)
    block = Block(32, 4, qk_norm=True, init_values=0.1).to(device).eval()
    return block, torch.randn(2, TOKENS, 32, device=device)


def attend_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: slice) -> torch.Tensor:
    assert q.shape[2] == rows.stop - rows.start
    return F.scaled_dot_product_attention(q, k, v)


def run(block: Block, x: torch.Tensor, by_query_chunks: bool) -> tuple[torch.Tensor, list]:
    read: list = []
    with torch.inference_mode():
        out = block(
            x.clone(), token_chunk=CHUNK, attend_query_chunk=attend_rows if by_query_chunks else None,
            read_chunk=lambda rows, before, after: read.append((rows, before.clone(), after.clone())),
            norm_implementation="torch",
        )  # fmt: skip
    return out, read


def test_by_query_chunks_the_block_updates_its_tokens_and_hands_over_its_chunks_as_with_all_queries():
    block, x = block_and_tokens()
    whole, whole_read = run(block, x, by_query_chunks=False)
    chunked, chunked_read = run(block, x, by_query_chunks=True)
    assert (chunked - x).abs().max() > 1e-2  # the block did change the tokens
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)  # SDPA tiles by the query count (1 ulp)
    assert [rows for rows, _, _ in chunked_read] == [slice(0, 32), slice(32, 64), slice(64, 96)]
    for (_, before, after), (_, whole_before, whole_after) in zip(chunked_read, whole_read, strict=True):
        torch.testing.assert_close(before, whole_before, rtol=0, atol=0)
        torch.testing.assert_close(after, whole_after, rtol=0, atol=1e-6)


def test_blocks_run_by_query_chunks_one_after_the_other_keep_k_and_v_in_the_same_memory():
    block, x = block_and_tokens()
    buffers: list[torch.Tensor] = []
    with torch.inference_mode():
        alone = block(x.clone(), token_chunk=CHUNK, attend_query_chunk=attend_rows, norm_implementation="torch")
        first = block(x.clone(), token_chunk=CHUNK, attend_query_chunk=attend_rows, heads_buffers=buffers)
        addresses = [t.data_ptr() for t in buffers]
        second = block(first.clone(), token_chunk=CHUNK, attend_query_chunk=attend_rows, heads_buffers=buffers)
        second_alone = block(first.clone(), token_chunk=CHUNK, attend_query_chunk=attend_rows)
    assert [tuple(t.shape) for t in buffers] == [(2, 4, TOKENS, 8)] * 2  # k and v of all tokens
    assert [t.data_ptr() for t in buffers] == addresses
    torch.testing.assert_close(first, alone, rtol=0, atol=0)
    torch.testing.assert_close(second, second_alone, rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (memory statistics)")
def test_on_the_gpu_by_query_chunks_the_block_holds_less_than_all_queries_and_outputs():
    block, _ = block_and_tokens("cuda")
    x = torch.randn(1, 64 * 1024, 32, device="cuda")

    def peak(by_query_chunks: bool) -> int:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        with torch.autocast("cuda", torch.bfloat16):
            run_chunks = attend_rows if by_query_chunks else None
            with torch.inference_mode():
                block(x, token_chunk=4096, attend_query_chunk=run_chunks, norm_implementation="torch")
        return torch.cuda.max_memory_allocated() - start

    peak(by_query_chunks=True), peak(by_query_chunks=False)  # cuBLAS's workspace, allocated once at the first matmul
    one_tensor = x.shape[1] * 32 * 2  # q or the output of all tokens in bf16
    assert peak(by_query_chunks=True) < peak(by_query_chunks=False) - one_tensor
