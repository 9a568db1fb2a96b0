"""VGGT: images of one scene -> cameras, depth and world points, in one forward pass."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from vggt_sparse_ns.layers.attention import NormImplementation
from vggt_sparse_ns.layers.block import PRE_NORM
from vggt_sparse_ns.layers.precision import autocast_dtype
from vggt_sparse_ns.model.aggregator import Aggregator, Tap
from vggt_sparse_ns.model.camera_head import CameraHead
from vggt_sparse_ns.model.cameras import pose_encoding_to_cameras
from vggt_sparse_ns.model.config import VGGTConfig, coerce_config
from vggt_sparse_ns.model.dpt_head import DPTHead
from vggt_sparse_ns.sparse.base import GlobalAttention
from vggt_sparse_ns.sparse.dense import DenseAttention
from vggt_sparse_ns.timing import COMMUNICATION_STAGE, StageTimer, stage_of

if TYPE_CHECKING:
    from vggt_sparse_ns.distributed.shard import FrameShard

Output = Literal["cameras", "depth", "points"]
SdpaBackend = Literal["auto", "cudnn", "flash", "efficient", "math"]
"""PyTorch's backends of scaled_dot_product_attention, tried in order by every SDPA call of the aggregator
(PyTorch's own word: "backend" names these only)."""

SDPA_BACKENDS: dict[str, list[SDPBackend]] = {
    # cuDNN first: measured fastest on Hopper for these shapes (docs/benchmarks/README.md).
    "auto": [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH],
    "flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
    "math": [SDPBackend.MATH],
}


class VGGT(nn.Module):
    def __init__(self, config: VGGTConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        config = coerce_config(config)
        self.config = config
        dim = 2 * config.embed_dim
        self.aggregator = Aggregator(config)
        self.camera_head = (
            CameraHead(dim, config.camera_trunk_depth, config.camera_num_heads, config.camera_iterations)
            if config.enable_camera
            else None
        )
        dpt = dict(
            patch_size=config.patch_size,
            features=config.dpt_features,
            out_channels=config.dpt_out_channels,
            layer_indices=config.dpt_intermediate_layer_idx,
        )
        self.point_head = DPTHead(dim, 4, "inv_log", **dpt) if config.enable_point else None
        self.depth_head = DPTHead(dim, 2, "exp", **dpt) if config.enable_depth else None

    def _heads(self, outputs: Collection[Output] | None) -> dict[Output, nn.Module]:
        available: dict[Output, nn.Module | None] = {
            "cameras": self.camera_head,
            "depth": self.depth_head,
            "points": self.point_head,
        }
        wanted = available.keys() if outputs is None else outputs
        unknown = [name for name in wanted if name not in available or (outputs and available[name] is None)]
        if unknown:
            raise ValueError(f"this model cannot output {unknown}; it has {[k for k, v in available.items() if v]}")
        return {name: available[name] for name in wanted if available[name] is not None}

    def _taps(self, heads: dict[Output, nn.Module], grid_hw: tuple[int, int]) -> dict[str, Tap]:
        patch_start = self.aggregator.patch_start
        taps: dict[str, Tap] = {}
        if "cameras" in heads:
            taps["cameras"] = Tap(self.config.depth - 1, lambda tokens: tokens[:, 0].float())
        for name in ("depth", "points"):
            if name in heads:
                head = heads[name]
                for level, layer in enumerate(head.layer_indices):
                    read = partial(_project_patches, head, level, patch_start, grid_hw)
                    taps[f"{name}.{level}"] = Tap(layer, read)
        return taps

    @torch.inference_mode()
    def forward(
        self,
        images: Tensor,
        global_attention: GlobalAttention | None = None,
        outputs: Collection[Output] | None = None,
        frames_chunk: int = 16,
        sdpa_backend: SdpaBackend = "auto",
        compute_dtype: torch.dtype | None = None,
        timer: StageTimer | None = None,
        norm_implementation: NormImplementation = "auto",
        taps_on_host: bool | Collection[str] = False,
        query_chunks: bool = False,
        shard: FrameShard | None = None,
    ) -> dict[str, Any]:
        """images [S, 3, H, W] or [B, S, 3, H, W], float in [0, 1] or uint8, H and W multiples of the patch size.

        Returns, for the requested ``outputs`` (default: every head the model has):
        cameras: pose_enc [B, S, 9], extrinsic (T_camera_world, OpenCV) [B, S, 3, 4], intrinsic [B, S, 3, 3];
        depth: depth [B, S, H, W, 1], depth_conf [B, S, H, W];
        points: world_points [B, S, H, W, 3], world_points_conf [B, S, H, W];
        and ``attention``, the global-attention strategy's summary (with the implementation that ran).
        ``frames_chunk`` frames go through the per-frame work at a time; ``sdpa_backend`` picks PyTorch's
        SDPA backends on CUDA; ``compute_dtype`` overrides the aggregator's autocast dtype (torch.float32:
        no autocast); a ``timer`` collects the time of each stage; ``norm_implementation`` chooses how the
        aggregator's norms run (auto: the fused Triton kernels for qk-norm + RoPE and the one-pass LayerNorm
        where they can run, else torch; see layers/attention.py). Images may stay on the host (pinned memory
        for speed): they go to the model's device a chunk at a time.
        ``taps_on_host`` keeps what the heads read from the aggregator (all of it, or the taps named: cameras,
        depth.0, ..., points.0, ...) in page-locked host memory until they run (the same values; less GPU memory, model/memory.py says when it is needed). ``query_chunks`` runs
        global attention by chunks of ``frames_chunk`` query frames where the strategy can (the same values;
        less GPU memory, a little more time).

        With a ``shard`` (distributed/shard.py), the scene's frames are shared out between processes: ``images``
        are this process's frames (``images[shard.local]`` of the scene), every process calls the model at once,
        and the predictions are those of one process given the whole scene, for this process's frames. Global
        attention exchanges q, k, v between the processes (distributed/attention.py) and the camera head, which
        attends across frames, gathers every frame's camera token. With ``taps_on_host`` each process keeps
        the taps of its own frames.
        """
        stage = stage_of(timer)
        if sdpa_backend not in SDPA_BACKENDS:
            raise ValueError(f"sdpa_backend is one of {', '.join(SDPA_BACKENDS)}, not {sdpa_backend!r}")
        PRE_NORM.check_choice(norm_implementation)
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"expected images [S, 3, H, W] or [B, S, 3, H, W], got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        patch = self.config.patch_size
        if height % patch or width % patch:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {patch}")
        heads = self._heads(outputs)
        taps = self._taps(heads, (height // patch, width // patch))

        device_type = self.aggregator.camera_token.device.type
        compute_dtype = compute_dtype or autocast_dtype(device_type)
        with (
            torch.autocast(device_type, dtype=compute_dtype, enabled=compute_dtype != torch.float32),
            sdpa_kernel(SDPA_BACKENDS[sdpa_backend], set_priority=True),
        ):
            global_attention = global_attention or DenseAttention()
            if shard is not None:
                from vggt_sparse_ns.distributed.attention import ShardedAttention

                global_attention = ShardedAttention(global_attention, shard, timer)
            aggregated = self.aggregator(
                images,
                global_attention,
                taps,
                frames_chunk=frames_chunk,
                timer=timer,
                norm_implementation=norm_implementation,
                taps_on_host=taps_on_host,
                query_chunks=query_chunks,
                first_frame=shard.local.start if shard is not None else 0,
            )

        kept = aggregated.kept
        predictions: dict[str, Any] = {"attention": aggregated.attention}
        if "cameras" in heads:
            camera_tokens = kept["cameras"].to(self.aggregator.camera_token.device)
            if shard is not None:
                with stage(COMMUNICATION_STAGE):
                    camera_tokens = shard.gather_frames(camera_tokens)
            with stage("camera_head"):
                pose_enc = heads["cameras"](camera_tokens)
                if shard is not None:
                    pose_enc = pose_enc[:, shard.local]
                extrinsic, intrinsic = pose_encoding_to_cameras(pose_enc, (height, width))
            predictions.update(pose_enc=pose_enc, extrinsic=extrinsic, intrinsic=intrinsic)
        for name, value_key in (("depth", "depth"), ("points", "world_points")):
            if name in heads:
                projections = [kept[f"{name}.{level}"] for level in range(len(heads[name].layer_indices))]
                with stage(f"{name}_head"):
                    values, confidence = heads[name](projections, (height, width), frames_chunk)
                predictions.update({value_key: values, f"{value_key}_conf": confidence})
        return predictions


def _project_patches(head: DPTHead, level: int, patch_start: int, grid_hw: tuple[int, int], tokens: Tensor) -> Tensor:
    return head.project(level, tokens[:, patch_start:], grid_hw)


def build_model(config: VGGTConfig | Mapping[str, Any] | None = None) -> VGGT:
    """A VGGT with the given architecture (a VGGTConfig, a config.json mapping, or VGGT-1B)."""
    return VGGT(config)
