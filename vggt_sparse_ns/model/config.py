"""VGGT hyper-parameters. Defaults are VGGT-1B; field names are those of the fixtures' config.json."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vggt_sparse_ns.hub import config_from_mapping


@dataclass(frozen=True)
class VGGTConfig:
    """Architecture of a VGGT model (defaults: facebook/VGGT-1B)."""

    img_size: int = 518
    """Side of the square image the position embedding was trained at."""
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    """Aggregator rounds (one frame block and one global block each)."""
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    qk_norm: bool = True
    rope_freq: float = 100.0
    aa_init_values: float = 0.01
    dino_depth: int = 24
    dino_num_heads: int = 16
    dino_mlp_ratio: float = 4.0
    dino_init_values: float = 1.0
    dino_interpolate_antialias: bool = True
    dino_interpolate_offset: float = 0.0
    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    camera_iterations: int = 4
    dpt_features: int = 256
    dpt_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    dpt_intermediate_layer_idx: tuple[int, ...] = (4, 11, 17, 23)
    enable_camera: bool = True
    enable_depth: bool = True
    enable_point: bool = True

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> VGGTConfig:
        """Build from a config.json mapping (the fixtures' or the hub's), ignoring keys that are not fields."""
        return config_from_mapping(cls, values)


def coerce_config(config: VGGTConfig | Mapping[str, Any] | None) -> VGGTConfig:
    """Accept a VGGTConfig, a config.json mapping, or None (VGGT-1B)."""
    return config_from_mapping(VGGTConfig, config)
