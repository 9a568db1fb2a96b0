"""Image files -> VGGT predictions on the host: the one call the CLI and the dataparser make."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from vggt_sparse_ns.images import ImageBatch, load_images
from vggt_sparse_ns.model import VGGT, load_pretrained, vggt_checkpoint
from vggt_sparse_ns.model.memory import MemoryEstimate, estimate_peak_bytes, free_device_bytes, plan_memory
from vggt_sparse_ns.pipeline.attention import (
    PlanRecorder,
    build_attention,
    resolve_attention,
    unused_settings_warning,
    uses_descriptors,
)
from vggt_sparse_ns.pipeline.config import MIN_FRAMES, ReconstructionConfig
from vggt_sparse_ns.pipeline.errors import InputError, ReconstructionOutOfMemoryError
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction
from vggt_sparse_ns.sparse.megaloc import MegaLoc, load_megaloc, megaloc_checkpoint, megaloc_descriptors
from vggt_sparse_ns.timing import StageTimer

if TYPE_CHECKING:
    from vggt_sparse_ns.distributed.shard import FrameShard

logger = logging.getLogger(__name__)
MEGALOC_FRAMES_CHUNK = 128
"""Frames moved to the device together for MegaLoc's descriptors."""


def resolve_device(choice: str) -> torch.device:
    """auto: cuda, then mps, then cpu. An explicit choice that is not available is an error."""
    mps_available = torch.backends.mps.is_available()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but PyTorch sees no CUDA GPU: use --device auto or cpu.")
    if choice == "mps" and not mps_available:
        raise InputError("--device mps was asked for, but MPS is not available: use --device auto or cpu.")
    return torch.device(choice)


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


@contextmanager
def _out_of_memory_as_advice(frames: int, strategy: str, device: torch.device) -> Iterator[None]:
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not _is_out_of_memory(error):
            raise
        raise ReconstructionOutOfMemoryError.advice(frames, strategy, str(device)) from error


def _peak_memory(device: torch.device) -> int | None:
    """Peak memory allocated on a CUDA device; None elsewhere (MPS reports current, not peak, memory)."""
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


def _descriptors_on_device(megaloc: MegaLoc, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """MegaLoc's descriptors of host ``images``, moved to the device a chunk at a time."""
    chunks = images.split(MEGALOC_FRAMES_CHUNK)
    return torch.cat([megaloc_descriptors(megaloc, chunk.to(device, non_blocking=True)) for chunk in chunks])


def _memory_plan(
    config: ReconstructionConfig, model: VGGT, images_shape: torch.Size, device: torch.device, points: bool
) -> dict[str, object]:
    """The model's memory arguments: --taps and --global-queries as set, or for auto the plan that fits the GPU's
    free memory at the least cost (``plan_memory``)."""
    frames, _, height, width = images_shape

    def estimate(query_chunks: bool) -> MemoryEstimate:  # the weights are on the device: the free memory lacks them
        return estimate_peak_bytes(
            model.config, frames, height, width, weights_bytes=0, frames_chunk=config.frames_chunk,
            query_chunks=query_chunks, points=points,
        )  # fmt: skip

    return plan_memory(config.taps, config.global_queries, estimate, free_device_bytes(device)).arguments()


def _require_heads_for(shard: FrameShard, heads: int) -> None:
    """Each process attends with some of the global attention's heads: refuse more processes than heads."""
    try:
        shard.head_runs(heads)
    except ValueError as error:
        raise InputError(f"{error}.") from None


def _on_scene_canvas(batch: ImageBatch, config: ReconstructionConfig, shard: FrameShard) -> ImageBatch:
    """This process's images padded like the scene's: images of different sizes are padded to the largest of
    the scene (load_images), so where another process holds larger ones, they are decoded again onto that size."""
    local = tuple(batch.pixels.shape[1:3])
    height, width = shard.maximum(torch.tensor(local)).tolist()
    if (height, width) == local:
        return batch
    return load_images(batch.paths, mode=config.preprocess, canvas=(height, width))


def _to_host(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].detach().float().cpu().numpy()


def reconstruct(
    image_paths: Sequence[str | os.PathLike],
    config: ReconstructionConfig,
    progress: StageTimer | None = None,
    *,
    point_head: bool = False,
    on_inference_start: Callable[[], None] | None = None,
    across_processes: bool = False,
) -> Reconstruction:
    """Image files of one scene -> cameras, depth and colours on the host: the whole feed-forward reconstruction.

    The weights are found first (missing weights stop the run before any image is decoded), then the images
    are decoded in a thread while the weights load; the global attention is chosen from ``config`` (dense up to
    ``dense_max_frames`` frames, covisibility above, by default) and the memory plan from the GPU's free memory.

    Args:
        image_paths: the scene's image files; frame 0 becomes the world frame.
        config: the model's settings (checkpoint, device, attention, memory plan).
        progress: records the stages "load model", "load images", "megaloc descriptors" (with
            --descriptors megaloc) and "inference", and the peak GPU memory.
        point_head: also run the point head (world points per pixel, needed only for a point cloud made from it).
        on_inference_start: called as inference begins: the CLI starts host work that needs no prediction
            (copying the images) in a thread of its own, while the GPU works.
        across_processes: this is rank 0's call in the process group of a command on several processes
            (``--gpus``, torchrun: distributed/launch.py), whose other ranks follow it: the frames are shared
            out between the processes, which run the model together (distributed/reconstruct.py), and the
            reconstruction of all frames comes back here, with each process's figures in ``progress.ranks``.
            ``on_inference_start`` is then called once every process has finished, so that nothing is
            written while one of them may still fail.

    Returns:
        A Reconstruction: ``T_camera_world`` [S, 3, 4] (OpenCV axes), ``intrinsics`` [S, 3, 3] and ``depth``
        [S, H, W] in model pixels, confidences, colours, the attention summary and the frame graph's edges.

    Raises:
        InputError: fewer than two images. ImageLoadError: an image cannot be used. WeightsUnavailableError:
            the checkpoint cannot be found or read. ReconstructionOutOfMemoryError: the accelerator ran out of
            memory (the message names the settings that help).

    Example:
        >>> result = reconstruct(sorted(Path("photos").glob("*.jpg")), ReconstructionConfig(device="cuda"))
        >>> result.T_camera_world[0]  # frame 0 is the world frame: [I | 0]
    """
    if len(image_paths) < MIN_FRAMES:
        raise InputError(f"VGGT needs at least {MIN_FRAMES} images of the scene, got {len(image_paths)}.")
    progress = progress or StageTimer()
    warning = unused_settings_warning(config, len(image_paths))
    if warning is not None:
        logger.warning(warning)
    if across_processes:
        from vggt_sparse_ns.distributed.reconstruct import lead

        return lead(image_paths, config, progress, point_head=point_head, on_done=on_inference_start)
    return predict(image_paths, config, progress, point_head=point_head, on_inference_start=on_inference_start)


def predict(
    image_paths: Sequence[str | os.PathLike],
    config: ReconstructionConfig,
    progress: StageTimer,
    *,
    point_head: bool = False,
    on_inference_start: Callable[[], None] | None = None,
    shard: FrameShard | None = None,
    model_timer: StageTimer | None = None,
) -> Reconstruction:
    """``reconstruct``'s work in this process: the reconstruction of ``image_paths``. With a ``shard`` they are this
    process's frames (``shard.local``) of a scene shared out between processes, which all call this at once; the
    images, the attention and the camera head then see the whole scene. ``model_timer`` receives the model's
    own stages (among them the communication), apart from ``progress``'s."""
    scene_frames = shard.frames if shard is not None else len(image_paths)
    device = resolve_device(config.device)
    strategy = resolve_attention(config, scene_frames)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    megaloc = None
    wants_megaloc = config.descriptors == "megaloc" and uses_descriptors(config, scene_frames)
    stop_decoding = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as decoder:
        try:
            with progress.stage("load model"), _out_of_memory_as_advice(scene_frames, strategy, device):
                checkpoint = vggt_checkpoint(config.checkpoint)
                megaloc_files = megaloc_checkpoint(config.megaloc_checkpoint) if wants_megaloc else None
                decoding = decoder.submit(load_images, image_paths, mode=config.preprocess, stop=stop_decoding)
                model = load_pretrained(checkpoint, device=device)
                if shard is not None:
                    _require_heads_for(shard, model.config.num_heads)
                if megaloc_files is not None:
                    megaloc = load_megaloc(megaloc_files, device=device)
        except BaseException:
            stop_decoding.set()  # the error need not wait for the images
            raise
        with progress.stage("load images"):
            batch = decoding.result()
            if shard is not None:
                batch = _on_scene_canvas(batch, config, shard)
    images = batch.tensor
    descriptors = None
    if megaloc is not None:
        with progress.stage("megaloc descriptors"), _out_of_memory_as_advice(scene_frames, strategy, device):
            descriptors = _descriptors_on_device(megaloc, images, device)
            if shard is not None:
                descriptors = shard.gather_frames(descriptors, dim=0)
        del megaloc
    outputs = ["cameras", "depth", "points"] if point_head else ["cameras", "depth"]
    with progress.stage("inference"), _out_of_memory_as_advice(scene_frames, strategy, device):
        if on_inference_start is not None:
            on_inference_start()
        attention = PlanRecorder(build_attention(config, scene_frames, descriptors))
        with torch.inference_mode():
            predictions = model(
                images,
                attention,
                outputs=outputs,
                frames_chunk=config.frames_chunk,
                **_memory_plan(config, model, images.shape, device, points=point_head),
                shard=shard,
                timer=model_timer,
            )
            host = {name: _to_host(value) for name, value in predictions.items() if isinstance(value, torch.Tensor)}
            summary = dict(predictions["attention"])
    progress.record_peak_memory(_peak_memory(device))
    del model, predictions, images
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the dataparser runs this before training on the same GPU

    return Reconstruction(
        image_paths=list(batch.paths),
        transforms=list(batch.transforms),
        T_camera_world=host["extrinsic"].astype(np.float32, copy=False),
        intrinsics=host["intrinsic"].astype(np.float32, copy=False),
        depth=host["depth"][..., 0].astype(np.float32, copy=False),
        depth_conf=host["depth_conf"].astype(np.float32, copy=False),
        colors=batch.pixels,
        world_points=host.get("world_points"),
        world_points_conf=host.get("world_points_conf"),
        attention=summary,
        graph_edges=attention.graph_edges(),
    )
