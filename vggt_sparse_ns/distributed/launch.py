"""Starting a run on several processes: ``--gpus N`` starts one process per GPU on this host; under torchrun
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in the environment) each process joins as started.

Rank 0 runs the command; the others follow it (distributed/reconstruct.py). CUDA tensors travel by NCCL and host
tensors and objects by gloo; on the CPU, gloo alone. A process that fails exits at once with its status (after
its one message); the launcher then stops the others, as torchrun does. Light at import: the command imports
this module to decide whether to launch.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Literal, NoReturn

from vggt_sparse_ns.interrupts import signals_as_interrupted
from vggt_sparse_ns.pipeline.errors import InputError

GpuChoice = Literal["all"] | int
TIMED_OUT_STATUS = 124
INTERRUPTED_STATUS = 128 + signal.SIGINT
SIGNAL_PASS_ON_SECONDS = 1.0
"""After Ctrl+C, how long the launcher waits before passing SIGINT on to the processes that have not ended (a
terminal's Ctrl+C reaches them all, and one SIGINT each is what they expect; ``kill -INT`` reaches the launcher
only). SIGTERM, sent to the launcher alone, is passed on at once."""
LEADER_CLEANUP_SECONDS = 60.0
"""After Ctrl+C (or SIGTERM), how long the launcher waits for rank 0 to leave the output folder as it was before
stopping it."""


def torchrun_processes() -> int:
    """The number of processes torchrun started (its WORLD_SIZE); 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def requested_processes(gpus: GpuChoice, device: str) -> int:
    """The processes ``--gpus`` asks for: ``all`` is every visible CUDA GPU (one process where there is none).
    On ``--device cpu`` a number starts that many CPU processes (gloo), as tests do."""
    if gpus == "all":
        import torch

        return max(1, torch.cuda.device_count()) if device in ("auto", "cuda") else 1
    if gpus < 1:
        raise InputError(f"--gpus must be at least 1 (or all), not {gpus}.")
    if gpus == 1 or device == "cpu":
        return gpus
    if device == "mps":
        raise InputError("--gpus: MPS is one device; run one process (--gpus 1).")
    import torch

    visible = torch.cuda.device_count()
    if visible < gpus:
        raise InputError(
            f"--gpus {gpus} was asked for, but PyTorch sees {visible} CUDA GPU(s): use --gpus all, a smaller number, "
            "or --device cpu for CPU processes."
        )
    return gpus


def run_command(
    main: Callable[[], None], processes: int, device: str, fail: Callable[[BaseException], NoReturn]
) -> None:
    """Run the command ``main`` over several processes: under torchrun, this process is one of them; otherwise
    ``processes`` are started here and this one waits for them (exiting with the status of the first that
    fails). ``main`` reports its own errors; a follower's are reported by ``fail``."""
    target = partial(_rank_main, main, device, fail)
    if torchrun_processes() > 1:
        as_process(target)
        return
    with signals_as_interrupted():  # SIGTERM is passed on as Ctrl+C is
        status = spawn(target, processes)
    if status:
        raise SystemExit(status)


def _rank_main(main: Callable[[], None], device: str, fail: Callable[[BaseException], NoReturn]) -> None:
    from vggt_sparse_ns.distributed.reconstruct import LEADER, follow, stop_followers
    from vggt_sparse_ns.distributed.shard import PEER_FAILURE_GRACE_SECONDS

    with process_group(device) as rank:
        if rank == LEADER:
            main()
            stop_followers()
            return
        try:
            follow()
        except Exception as error:
            # Rank 0 reports at once; an error that every process meets (settings, the model) is then shown once,
            # as this process is stopped meanwhile. A follower's own error is shown after the wait.
            time.sleep(PEER_FAILURE_GRACE_SECONDS)
            fail(error)


@contextmanager
def process_group(device: str) -> Iterator[int]:
    """Join the default process group the environment describes and yield this process's rank; leave it at the
    end (not when the body fails: the others may be waiting inside a collective, and the process exits anyway).
    On CUDA each process takes the GPU of its LOCAL_RANK."""
    import torch
    import torch.distributed as dist

    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    elif "OMP_NUM_THREADS" not in os.environ:
        # The host's cores shared out between its processes (torchrun's default is one thread each): more threads
        # than cores made the tiny model's forward 15x slower on 2 cores.
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes))
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
    yield dist.get_rank()
    dist.destroy_process_group()


def as_process(target: Callable[[], None]) -> None:
    """Run ``target`` as one process of a group: when it fails, print what it did not (the traceback of an
    unexpected error) and exit at once with its status, leaving the process group as it is (the others may be
    waiting inside a collective; they are stopped by the launcher or torchrun)."""
    try:
        target()
        return
    except SystemExit as error:
        if error.code in (None, 0):
            return
        if isinstance(error.code, str):
            print(error.code, file=sys.stderr)
        status = error.code if isinstance(error.code, int) else 1
    except KeyboardInterrupt:  # Ctrl+C on a follower: rank 0 reports it, once
        status = INTERRUPTED_STATUS
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def spawn(target: Callable[[], None], processes: int, timeout: float | None = None) -> int:
    """Run ``target`` in ``processes`` new processes on this host, joined as ranks 0..processes-1 (the
    environment torchrun would set); returns 0, or the status of the first process that failed (the others are
    then stopped), or ``TIMED_OUT_STATUS`` after ``timeout`` seconds (all stopped). On Ctrl+C (the terminal
    sends it to every process; ``kill -INT`` to this one only), or SIGTERM raised as ``Interrupted``, the
    processes still running (a moment later for SIGINT) are sent the same signal, and rank 0 is given
    ``LEADER_CLEANUP_SECONDS`` to leave the output folder as it was; the status is then rank 0's (it reports how
    the run ended), or 128 + the signal where rank 0 did not end in time."""
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    ranks = [
        context.Process(target=_spawned_rank, args=(target, rank, processes, port), name=f"rank {rank}")
        for rank in range(processes)
    ]
    for process in ranks:
        process.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    running = list(ranks)
    status = 0
    try:
        while running and status == 0:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ended = multiprocessing.connection.wait([process.sentinel for process in running], timeout=left)
            if not ended:
                status = TIMED_OUT_STATUS
            for process in [process for process in running if process.sentinel in ended]:
                process.join()
                running.remove(process)
                status = status or _exit_status(process.exitcode)
    except KeyboardInterrupt as interrupt:
        number = getattr(interrupt, "signal_number", signal.SIGINT)
        if number == signal.SIGINT:
            ranks[0].join(SIGNAL_PASS_ON_SECONDS)
        for process in running:
            if process.is_alive():
                os.kill(process.pid, number)
        ranks[0].join(LEADER_CLEANUP_SECONDS)
        ended = ranks[0].exitcode is not None
        status = _exit_status(ranks[0].exitcode) if ended else 128 + number
    finally:  # also on Ctrl+C
        for process in running:
            process.terminate()
        for process in running:
            process.join()
    return status


def _exit_status(exitcode: int | None) -> int:
    """A process's exit code as a shell reports it (128 + the signal that ended it)."""
    if exitcode is None or exitcode >= 0:
        return exitcode or 0
    return 128 - exitcode


def _spawned_rank(target: Callable[[], None], rank: int, processes: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(processes),
        LOCAL_WORLD_SIZE=str(processes),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    as_process(target)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
