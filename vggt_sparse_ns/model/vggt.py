"""VGGT: images of one scene -> cameras, depth and world points, in one forward pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vggt_sparse_ns.model.aggregator import Aggregator
from vggt_sparse_ns.model.camera_head import CameraHead
from vggt_sparse_ns.model.cameras import pose_encoding_to_cameras
from vggt_sparse_ns.model.config import VGGTConfig, coerce_config
from vggt_sparse_ns.model.dpt_head import DPTHead
from vggt_sparse_ns.sparse.base import GlobalAttention
from vggt_sparse_ns.sparse.dense import DenseAttention

COMPUTE_DTYPES = {"cuda": torch.bfloat16, "mps": torch.float16}
"""The aggregator's matrix work runs in these dtypes per device type; fp32 elsewhere."""


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

    def forward(
        self,
        images: Tensor,
        global_attention: GlobalAttention | None = None,
        frames_chunk: int = 8,
    ) -> dict[str, Any]:
        """images [S, 3, H, W] or [B, S, 3, H, W] in [0, 1], H and W multiples of the patch size.

        Returns pose_enc [B, S, 9], extrinsic (T_camera_world, OpenCV) [B, S, 3, 4],
        intrinsic [B, S, 3, 3], depth [B, S, H, W, 1], depth_conf [B, S, H, W],
        world_points [B, S, H, W, 3], world_points_conf [B, S, H, W] (for the enabled heads)
        and ``attention``, the global-attention strategy's summary.
        """
        if images.dim() == 4:
            images = images.unsqueeze(0)
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"expected images [S, 3, H, W] or [B, S, 3, H, W], got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        patch = self.config.patch_size
        if height % patch or width % patch:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {patch}")
        global_attention = global_attention or DenseAttention()

        device_type = images.device.type
        compute_dtype = COMPUTE_DTYPES.get(device_type)
        with torch.autocast(device_type, dtype=compute_dtype or torch.float32, enabled=compute_dtype is not None):
            aggregated = self.aggregator(images, global_attention, self.config.stored_layers)

        layers = {index: tokens.float() for index, tokens in aggregated.layers.items()}
        predictions: dict[str, Any] = {"attention": aggregated.attention}
        if self.camera_head is not None:
            camera_tokens = layers[self.config.depth - 1][:, :, 0]
            pose_enc = self.camera_head(camera_tokens)
            extrinsic, intrinsic = pose_encoding_to_cameras(pose_enc, (height, width))
            predictions.update(pose_enc=pose_enc, extrinsic=extrinsic, intrinsic=intrinsic)
        if self.depth_head is not None:
            depth, depth_conf = self.depth_head(layers, aggregated.patch_start, (height, width), frames_chunk)
            predictions.update(depth=depth, depth_conf=depth_conf)
        if self.point_head is not None:
            points, points_conf = self.point_head(layers, aggregated.patch_start, (height, width), frames_chunk)
            predictions.update(world_points=points, world_points_conf=points_conf)
        return predictions


def build_model(config: VGGTConfig | Mapping[str, Any] | None = None) -> VGGT:
    """A VGGT with the given architecture (a VGGTConfig, a config.json mapping, or VGGT-1B)."""
    return VGGT(config)
