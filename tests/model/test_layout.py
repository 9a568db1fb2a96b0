"""The default configuration is VGGT-1B: exactly the official checkpoint's keys and shapes."""

from __future__ import annotations

import json

import pytest
import torch

from vggt_sparse_ns.model import VGGTConfig, build_model
from vggt_sparse_ns.model.weights import SKIPPED_PREFIXES


def test_default_model_has_exactly_the_vggt_1b_checkpoint_layout(fixtures_dir):
    expected = json.loads((fixtures_dir / "vggt_1b_state_dict_shapes.json").read_text())
    expected = {key: tuple(shape) for key, shape in expected.items() if not key.startswith(SKIPPED_PREFIXES)}
    with torch.device("meta"):
        model = build_model(VGGTConfig())
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert sorted(set(expected) - set(actual)) == []
    assert sorted(set(actual) - set(expected)) == []
    assert {k: v for k, v in actual.items() if expected[k] != v} == {}
    assert sum(v.numel() for v in model.state_dict().values()) == sum(
        torch.Size(shape).numel() for shape in expected.values()
    )


def test_config_from_fixture_dict_ignores_unknown_keys(vggt_tiny_config):
    config = VGGTConfig.from_dict(vggt_tiny_config)
    assert config.embed_dim == 64
    assert config.dpt_intermediate_layer_idx == (1, 2, 4, 5)


def test_config_accepts_the_hub_constructor_arguments():
    hub_config = {"img_size": 518, "patch_size": 14, "embed_dim": 1024, "enable_camera": True,
                  "enable_point": False, "enable_depth": True, "enable_track": True}  # fmt: skip
    config = VGGTConfig.from_dict(hub_config)
    assert config == VGGTConfig(enable_point=False)
    with torch.device("meta"):
        model = build_model(hub_config)
    assert model.point_head is None and model.depth_head is not None


def test_build_model_rejects_an_invalid_field_type():
    with pytest.raises(TypeError):
        build_model(42)  # type: ignore[arg-type]
