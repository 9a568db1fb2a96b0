"""What each process of the multi-process tests runs (importable by the processes spawn starts)."""

from __future__ import annotations

from pathlib import Path

import torch

from vggt_sparse_ns.distributed.launch import process_group
from vggt_sparse_ns.distributed.shard import FrameShard
from vggt_sparse_ns.model import load_pretrained
from vggt_sparse_ns.sparse import CovisibilityAttention, DenseAttention, GlobalAttention

NEIGHBORS = 2
"""Covisibility over 7 frames with 2 neighbours each: a sparse frame graph (exact attention needs 6)."""


def strategies() -> dict[str, GlobalAttention]:
    return {"dense": DenseAttention(), "covisibility": CovisibilityAttention(neighbors=NEIGHBORS)}


def two_scenes(scene: torch.Tensor) -> torch.Tensor:
    """[2, S, 3, H, W]: the scene and its frames upside down, run as one batch."""
    return torch.stack((scene, scene.flip(-2)))


def predict_in_group(
    checkpoint_dir: Path, scene_file: Path, out_dir: Path, fail_rank: int | None = None, device: str = "cpu"
) -> None:
    """Join the gloo group, run the tiny model on this process's frames of the scene with each strategy, and of
    two scenes batched, and with the taps in host memory (CUDA only; on the CPU they stay where they are), save
    the predictions as ``{strategy, batched or taps_on_host}.rank{rank}.pt`` (a rank equal to
    ``fail_rank`` raises instead). On CUDA each process takes its GPU and computes in fp32."""
    with process_group(device):
        torch.backends.cudnn.allow_tf32 = False  # fp32 convolutions on the GPU, as in the one-GPU reference
        model = load_pretrained(checkpoint_dir, device=device)
        images = torch.load(scene_file).to(device)
        shard = FrameShard.of_scene(images.shape[0])
        if shard.rank == fail_rank:
            raise RuntimeError(f"injected failure on rank {shard.rank}")
        saved = {}
        for name, strategy in strategies().items():
            predictions = model(images[shard.local], strategy, shard=shard, compute_dtype=torch.float32)
            saved[name] = {key: value.cpu() for key, value in predictions.items() if isinstance(value, torch.Tensor)}
            saved[name]["attention"] = predictions["attention"]
        batched = model(
            two_scenes(images)[:, shard.local], strategies()["covisibility"], shard=shard, compute_dtype=torch.float32
        )
        saved["batched"] = {key: value.cpu() for key, value in batched.items() if isinstance(value, torch.Tensor)}
        on_host = model(
            images[shard.local],
            strategies()["covisibility"],
            shard=shard,
            compute_dtype=torch.float32,
            taps_on_host=True,
        )
        saved["taps_on_host"] = {key: value.cpu() for key, value in on_host.items() if isinstance(value, torch.Tensor)}
        for name, predictions in saved.items():
            torch.save(predictions, out_dir / f"{name}.rank{shard.rank}.pt")


def reconstruct_in_group(checkpoint_dir: Path, image_dir: Path, out_dir: Path) -> None:
    """Join a gloo group that no command of ours started (as nerfstudio's multi-GPU training does before its
    dataparser runs) and reconstruct every image of ``image_dir`` with the pipeline's ``reconstruct``; save the
    frames' count as ``frames.rank{rank}.pt``."""
    from vggt_sparse_ns.pipeline.config import ReconstructionConfig
    from vggt_sparse_ns.pipeline.run import reconstruct

    with process_group("cpu") as rank:
        paths = sorted(image_dir.iterdir())
        result = reconstruct(paths, ReconstructionConfig(checkpoint=str(checkpoint_dir), device="cpu"))
        torch.save(result.T_camera_world.shape[0], out_dir / f"frames.rank{rank}.pt")
