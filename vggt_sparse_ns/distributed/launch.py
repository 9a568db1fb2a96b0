"""Starting a run on several processes: ``--gpus N`` starts one process per GPU on this host; under torchrun
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in the environment) each process joins as started.

Rank 0 runs the command; the others follow it (distributed/reconstruct.py). CUDA tensors travel by NCCL and host
tensors and objects by gloo; on the CPU, gloo alone. A process that fails exits at once with its status (after
its one message); the launcher then stops the others, as torchrun does. A process blocked in C code (a
collective whose peer is stuck or gone, say) runs no signal handler until that call returns, and gloo's timeout
is 30 minutes, so the launcher does not wait on signals alone: whatever has not ended a few seconds after it was
told to is killed (SIGKILL), followers first, so that rank 0's collectives fail and it can still clean up
itself; should rank 0 have to be killed too, the launcher undoes what it left in the output folder. Light at
import: the command imports this module to decide whether to launch.
"""

from __future__ import annotations

import ctypes
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
STOP_GRACE_SECONDS = 5.0
"""How long a process that the launcher tells to stop (passing Ctrl+C or SIGTERM on, or SIGTERM after another
process failed) may take before it is killed; rank 0, which cleans up the output folder, gets
``LEADER_CLEANUP_SECONDS``."""
LEADER_CLEANUP_SECONDS = 20.0
"""How long the launcher waits for rank 0 to leave the output folder as it was, once it told the processes to
stop, before killing it and cleaning up in its place."""


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
    main: Callable[[], None],
    processes: int,
    device: str,
    fail: Callable[[BaseException], NoReturn],
    recover_output: Callable[[], str] | None = None,
) -> None:
    """Run the command ``main`` over several processes: under torchrun, this process is one of them; otherwise
    ``processes`` are started here and this one waits for them (exiting with the status of the first that
    fails). ``main`` reports its own errors; a follower's are reported by ``fail``. ``recover_output`` undoes
    what rank 0 left in the output when it was killed before it could (see ``spawn``)."""
    target = partial(_rank_main, main, device, fail)
    if torchrun_processes() > 1:
        as_process(target)
        return
    with signals_as_interrupted():  # SIGTERM is passed on as Ctrl+C is
        status = spawn(target, processes, recover_output=recover_output)
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
    target: Callable[[], None], ready: ctypes.c_bool | None = None, failure_reported: ctypes.c_bool | None = None
) -> None:
    """Run ``target`` as one process of a group: when it fails, print what it did not (the traceback of an
    unexpected error) and exit at once with its status, leaving the process group as it is (the others may be
    waiting inside a collective; they are stopped by the launcher or torchrun). Ctrl+C and SIGTERM raise
    ``Interrupted`` from here on; ``ready`` is set then (spawn passes signals on only from then). A signal that
    comes once ``failure_reported`` is set (spawn: another process failed and its message is shown) adds no
    line. Both are flags in shared memory, read and written without a lock: the flag is read in the signal
    handler, and a second signal that came while the handler held a lock would wait for that lock forever."""
    already_reported = (lambda: bool(failure_reported.value)) if failure_reported is not None else lambda: False
    try:
        with signals_as_interrupted(), reported_elsewhere_when(already_reported):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)  # blocked where spawn started this process
            if ready is not None:
                ready.value = True
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


def spawn(
    target: Callable[[], None],
    processes: int,
    timeout: float | None = None,
    *,
    recover_output: Callable[[], str] | None = None,
    leader_cleanup_seconds: float = LEADER_CLEANUP_SECONDS,
) -> int:
    """Run ``target`` in ``processes`` new processes on this host, joined as ranks 0..processes-1 (the
    environment torchrun would set), and end them all, whatever happens, within a bounded time.

    Args:
        target: What each process runs (rank 0 leads: it reports how the run ended and owns the output).
        processes: How many to start.
        timeout: Seconds after which all are stopped (``TIMED_OUT_STATUS``); None: no limit.
        recover_output: Called here when rank 0 did not end by itself (killed, here or from outside, or
            crashed) to undo what it left in the output; returns what the output holds, for the one line.
        leader_cleanup_seconds: How long rank 0 is given to end once told to stop.

    Returns:
        0; or the status of the first process that failed (the others are then stopped, silently: it said why,
        or, where it ended abruptly by a signal (killed, crashed), this launcher says so in one ``Error:`` line);
        or ``TIMED_OUT_STATUS``. On Ctrl+C (the terminal sends it to every process; ``kill -INT`` to this one
        only), or SIGTERM raised as ``Interrupted``, the processes still running (a moment later for SIGINT;
        each once it raises signals as ``Interrupted``, see ``_started_ignoring_signals``) are sent the same
        signal, a second is dropped, and the status is rank 0's (it reports how the run ended), or 128 + the
        signal where rank 0 had to be killed (this launcher then prints the one line).

    Processes told to stop that have not ended ``STOP_GRACE_SECONDS`` later are killed (SIGKILL), rank 0 only
    after ``leader_cleanup_seconds``, so that a process blocked in C code cannot hold the run.
    """
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    ready = [context.RawValue(ctypes.c_bool, False) for _ in range(processes)]
    failure_reported = context.RawValue(ctypes.c_bool, False)
    ranks = [
        context.Process(
            target=_spawned_rank,
            args=(target, rank, processes, port, ready[rank], failure_reported),
            name=f"rank {rank}",
        )
        for rank in range(processes)
    ]
    deadline = None if timeout is None else time.monotonic() + timeout
    started: list[BaseProcess] = []
    status, failed = 0, None
    interrupt_number = None
    try:
        with _started_ignoring_signals():
            for process in ranks:
                process.start()
                started.append(process)
        status, failed = _first_failure(started, failure_reported, deadline)
    except KeyboardInterrupt as interrupt:
        interrupt_number = getattr(interrupt, "signal_number", signal.SIGINT)
    finally:  # also on an error of the launcher itself
        with held_signals() as arrived:  # the processes are sent this one; a second changes nothing here
            _stop(started, ready, interrupt_number, leader_cleanup_seconds)
            arrived.clear()
    with held_signals() as arrived:
        status = _report(started[0], status, failed, interrupt_number, recover_output)
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


def _first_failure(
    started: list[BaseProcess], failure_reported: ctypes.c_bool, deadline: float | None
) -> tuple[int, BaseProcess | None]:
    """Wait until every process has ended (0, None), one failed (its status and it) or ``deadline`` passed
    (``TIMED_OUT_STATUS``, None). Where the failure is reported (the process's own message, or this launcher's
    line for one ended by a signal), the others are told so first: they then end without a line."""
    running = list(started)
    while running:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ended = multiprocessing.connection.wait([process.sentinel for process in running], timeout=left)
        if not ended:
            return TIMED_OUT_STATUS, None
        for process in [process for process in running if process.sentinel in ended]:
            process.join()
            running.remove(process)
            status = _exit_status(process.exitcode)
            if status:
                if status < 128 or _ended_by_signal(process):  # not one interrupted by a signal it handled
                    failure_reported.value = True
                return status, process
    return 0, None


def _stop(
    started: list[BaseProcess], ready: list[ctypes.c_bool], interrupt_number: int | None, leader_cleanup_seconds: float
) -> None:
    """Send the processes still running the signal this launcher was interrupted by (SIGTERM when it was not),
    each once it raises signals as ``Interrupted`` (its ``ready`` flag); kill the followers that have not ended
    ``STOP_GRACE_SECONDS`` later, then rank 0 if it has not ended ``leader_cleanup_seconds`` after the start.
    After Ctrl+C (SIGINT) the signal is passed on only ``SIGNAL_PASS_ON_SECONDS`` later: a terminal's reached
    them all."""
    if not started:
        return
    began = time.monotonic()
    leader, followers = started[0], started[1:]
    signal_number = interrupt_number or signal.SIGTERM
    if interrupt_number == signal.SIGINT:
        _wait_for([leader], began + SIGNAL_PASS_ON_SECONDS)
    grace_ends = time.monotonic() + STOP_GRACE_SECONDS
    for process, is_ready in zip(started, ready, strict=False):
        while process.is_alive() and not is_ready.value and time.monotonic() < grace_ends:
            time.sleep(0.05)
        if process.is_alive():
            os.kill(process.pid, signal_number)
    _wait_for(followers, grace_ends)
    for process in [*followers, leader]:
        if process is leader:
            _wait_for([leader], began + leader_cleanup_seconds)
        if process.is_alive():
            process.kill()
        process.join()


def _wait_for(processes: list[BaseProcess], deadline: float) -> None:
    """Until every one of ``processes`` has ended, or ``deadline`` (time.monotonic) has passed."""
    while (alive := [process for process in processes if process.is_alive()]) and time.monotonic() < deadline:
        multiprocessing.connection.wait([process.sentinel for process in alive], max(0.0, deadline - time.monotonic()))


def _report(
    leader: BaseProcess,
    status: int,
    failed: BaseProcess | None,
    interrupt_number: int | None,
    recover_output: Callable[[], str] | None,
) -> int:
    """Once every process has ended: undo rank 0's output where rank 0 could not, print the line no process
    printed, and return the run's status."""
    from vggt_sparse_ns.cli_errors import print_error, print_interrupted

    leader_ended_itself = not _ended_by_signal(leader)
    detail = "" if leader_ended_itself or recover_output is None else recover_output()
    if failed is not None and _ended_by_signal(failed):
        cause = signal.Signals(-failed.exitcode).name
        print_error(
            f"process {failed.name} ended abruptly ({cause}: killed, e.g. for lack of memory, or crashed).", detail
        )
    if interrupt_number is None:
        return status
    if leader_ended_itself:
        return _exit_status(leader.exitcode)
    print_interrupted(interrupt_number, detail)
    return 128 + interrupt_number


def _ended_by_signal(process: BaseProcess) -> bool:
    """Whether ``process`` ended by a signal it did not handle (SIGKILL, a crash), so without a word or cleanup."""
    return process.exitcode is not None and process.exitcode < 0


def _exit_status(exitcode: int | None) -> int:
    """A process's exit code as a shell reports it (128 + the signal that ended it)."""
    if exitcode is None or exitcode >= 0:
        return exitcode or 0
    return 128 - exitcode


def _spawned_rank(
    target: Callable[[], None],
    rank: int,
    processes: int,
    port: int,
    ready: ctypes.c_bool,
    failure_reported: ctypes.c_bool,
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
