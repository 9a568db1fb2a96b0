"""One reconstruction on several processes: rank 0 leads (the command runs there), the others follow.

Rank 0's ``reconstruct`` call sends the job (image paths, settings) to the followers; every process decodes and
runs its share of the frames (``FrameShard``), the model exchanging what attention and the camera head need;
the host results are gathered on rank 0, which alone writes the dataset. A command reconstructs once, so rank 0
sends the followers one message: the job, or stop when the command ends without one (it failed before). The
followers end with their job, not waiting while rank 0 writes or serves the viewer; a process that fails exits,
and the launcher or torchrun stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from vggt_sparse_ns.distributed.shard import FrameShard, collective
from vggt_sparse_ns.pipeline.config import ReconstructionConfig
from vggt_sparse_ns.pipeline.errors import InputError
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.pipeline.run import predict, resolve_device
from vggt_sparse_ns.timing import COMMUNICATION_STAGE, StageTimer

LEADER = 0
_job_sent = False
"""Whether rank 0 has sent the followers their job (the one message they wait for)."""


@dataclass(frozen=True)
class Job:
    """What rank 0 sends the followers: the scene's images and the settings."""

    image_paths: list[str | os.PathLike]
    config: ReconstructionConfig
    point_head: bool


def _broadcast(job: Job | None) -> Job | None:
    box = [job]
    with collective():
        dist.broadcast_object_list(box, src=LEADER)
    return box[0]


def lead(
    image_paths: Sequence[str | os.PathLike],
    config: ReconstructionConfig,
    progress: StageTimer,
    *,
    point_head: bool,
    on_done: Callable[[], None] | None = None,
) -> Reconstruction:
    """Rank 0: the reconstruction of all frames, run by every process of the default group. ``progress`` gets
    rank 0's stages and, in ``ranks``, each process's report (stages, peak memory, communication seconds);
    ``on_done`` is called once every process has finished."""
    processes = dist.get_world_size()
    if len(image_paths) < processes:
        raise InputError(f"{len(image_paths)} images cannot be shared by {processes} processes: use fewer (--gpus).")
    global _job_sent
    if _job_sent:
        raise RuntimeError("the processes have run this command's reconstruction already; a command makes one")
    job = Job(list(image_paths), config, point_head)
    _broadcast(job)
    _job_sent = True
    parts = _run(job, progress)
    assert parts is not None
    reconstruction = concatenate([part for part, _ in parts])
    progress.ranks = [report for _, report in parts]
    if on_done is not None:
        on_done()
    return reconstruction


def follow() -> None:
    """Ranks > 0: run rank 0's job, unless it says stop."""
    job = _broadcast(None)
    if job is not None:
        _run(job, StageTimer())


def stop_followers() -> None:
    """Rank 0, at the end of the command: release the followers if they still wait for their job."""
    if not _job_sent:
        _broadcast(None)


def _run(job: Job, progress: StageTimer) -> list[tuple[Reconstruction, dict[str, Any]]] | None:
    """This process's share of ``job``; on rank 0, every process's (reconstruction, report) in rank order."""
    shard = FrameShard.of_scene(len(job.image_paths))
    device = resolve_device(job.config.device)
    model_timer = StageTimer(device)
    before = progress.seconds()
    local = predict(
        job.image_paths[shard.local],
        job.config,
        progress,
        point_head=job.point_head,
        shard=shard,
        model_timer=model_timer,
    )
    report = {
        "rank": shard.rank,
        "frames": [shard.local.start, shard.local.stop],
        "seconds": {
            stage: seconds - before.get(stage, 0.0)
            for stage, seconds in progress.seconds().items()
            if seconds != before.get(stage)
        },
        "communication_seconds": model_timer.seconds().get(COMMUNICATION_STAGE, 0.0),
        "peak_memory_bytes": progress.peak_memory_bytes,
        "device": f"cuda:{torch.cuda.current_device()}" if device.type == "cuda" else device.type,
    }
    parts: list[Any] | None = [None] * shard.processes if shard.rank == LEADER else None
    with collective():
        dist.gather_object((local, report), parts, dst=LEADER)
    return parts


def concatenate(parts: Sequence[Reconstruction]) -> Reconstruction:
    """The reconstructions of consecutive runs of a scene's frames -> the scene's (attention summary and frame
    graph are the scene's in every part: the first part's are kept)."""

    def joined(name: str) -> np.ndarray | None:
        values = [getattr(part, name) for part in parts]
        return None if values[0] is None else np.concatenate(values)

    first = parts[0]
    return Reconstruction(
        image_paths=[path for part in parts for path in part.image_paths],
        transforms=[transform for part in parts for transform in part.transforms],
        T_camera_world=joined("T_camera_world"),
        intrinsics=joined("intrinsics"),
        depth=joined("depth"),
        depth_conf=joined("depth_conf"),
        colors=joined("colors"),
        world_points=joined("world_points"),
        world_points_conf=joined("world_points_conf"),
        attention=first.attention,
        graph_edges=first.graph_edges,
    )
