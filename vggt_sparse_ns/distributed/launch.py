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
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from typing import Literal, NoReturn

from vggt_sparse_ns.interrupts import (
    HELD_SIGNALS,
    held_signals,
    raise_if_signalled,
    reported_elsewhere_when,
    signals_as_interrupted,
)
from vggt_sparse_ns.pipeline.errors import InputError

GpuChoice = Literal["all"] | int
TIMED_OUT_STATUS = 124
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
            raise_if_signalled()
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


def as_process(
    target: Callable[[], None], ready: EventType | None = None, failure_reported: EventType | None = None
) -> None:
    """Run ``target`` as one process of a group: when it fails, print what it did not (the traceback of an
    unexpected error) and exit at once with its status, leaving the process group as it is (the others may be
    waiting inside a collective; they are stopped by the launcher or torchrun). Ctrl+C and SIGTERM raise
    ``Interrupted`` from here on; ``ready`` is set then (spawn passes signals on only from then). A signal that
    comes once ``failure_reported`` is set (spawn: another process failed with its message) adds no line."""
    already_reported = failure_reported.is_set if failure_reported is not None else lambda: False
    try:
        with signals_as_interrupted(), reported_elsewhere_when(already_reported):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)  # blocked where spawn started this process
            if ready is not None:
                ready.set()
            target()
        return
    except SystemExit as error:
        if error.code in (None, 0):
            return
        if isinstance(error.code, str):
            print(error.code, file=sys.stderr)
        status = error.code if isinstance(error.code, int) else 1
    except KeyboardInterrupt as interrupt:  # before the command reported it (or after): rank 0 says so, once
        number = getattr(interrupt, "signal_number", signal.SIGINT)
        status = 128 + number
        if os.environ.get("RANK", "0") == "0" and not getattr(interrupt, "reported_elsewhere", False):
            from vggt_sparse_ns.cli_errors import print_interrupted

            with held_signals() as arrived:
                print_interrupted(number)
                arrived.clear()
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def spawn(target: Callable[[], None], processes: int, timeout: float | None = None) -> int:
    """Run ``target`` in ``processes`` new processes on this host, joined as ranks 0..processes-1 (the
    environment torchrun would set); returns 0, or the status of the first process that failed (the others are
    then stopped: silently where it failed with its message, which is then the one shown), or
    ``TIMED_OUT_STATUS`` after ``timeout`` seconds (all stopped). On Ctrl+C (the terminal sends it to every
    process; ``kill -INT`` to this one only), or SIGTERM raised as ``Interrupted``, the processes still running
    (a moment later for SIGINT; each once it raises signals as ``Interrupted``, see
    ``_started_ignoring_signals``) are sent the same signal, a second is dropped, and rank 0 is given
    ``LEADER_CLEANUP_SECONDS`` to leave the output folder as it was; the status is then rank 0's (it reports how
    the run ended), or 128 + the signal where rank 0 did not end in time."""
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    ready = [context.Event() for _ in range(processes)]
    failure_reported = context.Event()
    ranks = [
        context.Process(
            target=_spawned_rank,
            args=(target, rank, processes, port, ready[rank], failure_reported),
            name=f"rank {rank}",
        )
        for rank in range(processes)
    ]
    deadline = None if timeout is None else time.monotonic() + timeout
    running: list[BaseProcess] = []
    status = 0
    try:
        with _started_ignoring_signals():
            for process in ranks:
                process.start()
                running.append(process)
        while running and status == 0:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ended = multiprocessing.connection.wait([process.sentinel for process in running], timeout=left)
            if not ended:
                status = TIMED_OUT_STATUS
            for process in [process for process in running if process.sentinel in ended]:
                process.join()
                running.remove(process)
                if not status:
                    status = _exit_status(process.exitcode)
                    if 0 < status < 128:  # it failed with its message (not killed, not interrupted)
                        failure_reported.set()
    except KeyboardInterrupt as interrupt:
        number = getattr(interrupt, "signal_number", signal.SIGINT)
        with held_signals() as arrived:  # the processes are sent this one; a second changes nothing here
            status = _pass_on(
                number, ranks[0], {process: ready[rank] for rank, process in enumerate(ranks) if process in running}
            )
            arrived.clear()
    finally:  # also on Ctrl+C
        with held_signals() as arrived:
            for process in running:
                process.terminate()
            for process in running:
                process.join()
            arrived.clear()
    return status


@contextmanager
def _started_ignoring_signals() -> Iterator[None]:
    """Processes started in the block inherit SIGINT and SIGTERM ignored (and, depending on how Python starts
    them, blocked) until ``as_process`` raises them as ``Interrupted``: a terminal's Ctrl+C while one still
    imports is then no traceback, and SIGTERM no silent death. Here they are blocked meanwhile (a blocked signal
    stays pending, even ignored) and delivered after the block."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in HELD_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _pass_on(signal_number: int, leader: BaseProcess, running: dict[BaseProcess, EventType]) -> int:
    """Send ``signal_number`` to each process still running once it raises signals as ``Interrupted`` (its
    ready event), and wait for rank 0 (see spawn); returns the status."""
    deadline = time.monotonic() + LEADER_CLEANUP_SECONDS
    if signal_number == signal.SIGINT:
        leader.join(SIGNAL_PASS_ON_SECONDS)
    for process, ready in running.items():
        while process.is_alive() and not ready.wait(0.05) and time.monotonic() < deadline:
            pass
        if process.is_alive():
            os.kill(process.pid, signal_number)
    leader.join(max(0.0, deadline - time.monotonic()))
    return _exit_status(leader.exitcode) if leader.exitcode is not None else 128 + signal_number


def _exit_status(exitcode: int | None) -> int:
    """A process's exit code as a shell reports it (128 + the signal that ended it)."""
    if exitcode is None or exitcode >= 0:
        return exitcode or 0
    return 128 - exitcode


def _spawned_rank(
    target: Callable[[], None], rank: int, processes: int, port: int, ready: EventType, failure_reported: EventType
) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(processes),
        LOCAL_WORLD_SIZE=str(processes),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    as_process(target, ready, failure_reported)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
