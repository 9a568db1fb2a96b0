"""How a scene's frames and the attention heads are shared out between processes (no process group needed)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time

import pytest

from vggt_sparse_ns.distributed import shard as shard_module
from vggt_sparse_ns.distributed.shard import FrameShard, PeerFailure, collective, split_evenly
from vggt_sparse_ns.interrupts import Interrupted, signals_as_interrupted


def test_frames_are_split_into_contiguous_runs_in_rank_order_the_first_ones_one_longer():
    assert split_evenly(7, 3) == [slice(0, 3), slice(3, 5), slice(5, 7)]
    assert split_evenly(8, 2) == [slice(0, 4), slice(4, 8)]
    assert [FrameShard(7, rank, 3).local for rank in range(3)] == split_evenly(7, 3)


def test_a_head_count_the_processes_do_not_divide_is_split_unevenly():
    assert FrameShard(9, 0, 3).head_runs(16) == [slice(0, 6), slice(6, 11), slice(11, 16)]


def test_more_processes_than_heads_are_refused_with_the_largest_count_that_works():
    with pytest.raises(ValueError, match="use at most 4 processes"):
        FrameShard(9, 0, 5).head_runs(4)


def test_more_processes_than_frames_are_refused():
    with pytest.raises(ValueError, match="3 frames cannot be shared by 4 processes"):
        FrameShard(3, 0, 4)


def test_a_failed_collective_becomes_peer_failure_after_the_grace(monkeypatch):
    monkeypatch.setattr(shard_module, "PEER_FAILURE_GRACE_SECONDS", 0.01)
    failed = "communication between the processes failed: Connection closed by peer"
    with pytest.raises(PeerFailure, match=failed), signals_as_interrupted(), collective():
        raise RuntimeError("Connection closed by peer")


def test_a_process_told_to_stop_whose_interrupt_was_discarded_stops_at_its_failed_collective_without_a_message():
    """The launcher's SIGTERM raised Interrupted inside C code that dropped it (Triton's extension module as it
    initialised, measured); the collective then fails as the other processes stop: Interrupted at once (silent on
    ranks > 0), not PeerFailure after the grace."""
    started = time.monotonic()
    with pytest.raises(Interrupted) as interrupt, signals_as_interrupted():
        with contextlib.suppress(KeyboardInterrupt):  # discarded, as that C code does
            signal.raise_signal(signal.SIGTERM)
        with collective():
            raise RuntimeError("Connection closed by peer")
    assert interrupt.value.signal_number == signal.SIGTERM
    assert time.monotonic() - started < shard_module.PEER_FAILURE_GRACE_SECONDS / 5


def test_one_process_imports_nothing_distributed(vggt_tiny_dir):
    """The single-process path (the model, the pipeline's reconstruct) never imports vggt_sparse_ns.distributed."""
    script = (
        "import sys, torch\n"
        "from vggt_sparse_ns.model import load_pretrained\n"
        "from vggt_sparse_ns.pipeline import run\n"
        "from vggt_sparse_ns.sparse import CovisibilityAttention\n"
        f"model = load_pretrained({str(vggt_tiny_dir)!r}, device='cpu')\n"
        "model(torch.rand(4, 3, 28, 42), CovisibilityAttention(neighbors=1))\n"
        "print(sorted(name for name in sys.modules if name.startswith('vggt_sparse_ns.distributed')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]"
