"""The reconstruction settings and the choice of global attention."""

from __future__ import annotations

import dataclasses

import pytest

from vggt_sparse_ns.pipeline.attention import build_attention, resolve_attention, unused_settings_warning
from vggt_sparse_ns.pipeline.config import DENSE_MAX_FRAMES, ReconstructionConfig
from vggt_sparse_ns.sparse import CovisibilityAttention, DenseAttention


def test_auto_attention_is_dense_up_to_the_threshold_and_covisibility_above() -> None:
    config = ReconstructionConfig()
    assert resolve_attention(config, DENSE_MAX_FRAMES) == "dense"
    assert resolve_attention(config, DENSE_MAX_FRAMES + 1) == "covisibility"
    assert resolve_attention(ReconstructionConfig(dense_max_frames=4), 5) == "covisibility"


def test_an_explicit_strategy_is_used_whatever_the_frame_count() -> None:
    assert resolve_attention(ReconstructionConfig(attention="dense"), 10_000) == "dense"
    assert resolve_attention(ReconstructionConfig(attention="block-sparse"), 2) == "block-sparse"


def test_built_strategies_carry_the_settings() -> None:
    assert isinstance(build_attention(ReconstructionConfig(attention="dense"), 100), DenseAttention)
    covisibility = build_attention(ReconstructionConfig(attention="covisibility", neighbors=5), 100)
    assert isinstance(covisibility, CovisibilityAttention)
    assert covisibility.neighbors == 5


@pytest.mark.parametrize("field", ["neighbors", "frames_chunk"])
def test_counts_below_one_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field.replace("_", "-")):
        ReconstructionConfig(**{field: 0})


def test_covisibility_settings_are_named_when_another_strategy_runs() -> None:
    settings = ReconstructionConfig(descriptors="megaloc", neighbors=4)
    warning = unused_settings_warning(settings, DENSE_MAX_FRAMES)
    assert "--descriptors megaloc" in warning and "--neighbors 4" in warning and "auto chose it" in warning
    block_sparse = unused_settings_warning(dataclasses.replace(settings, attention="block-sparse"), 1000)
    assert "--neighbors 4" in block_sparse and "block-sparse" in block_sparse
    assert unused_settings_warning(settings, DENSE_MAX_FRAMES + 1) is None, "covisibility uses them"
    assert unused_settings_warning(ReconstructionConfig(attention="dense"), 10) is None, "defaults are not named"


def test_the_point_head_is_not_a_setting() -> None:
    """It runs exactly when the point cloud comes from the point map (export.point_source)."""
    assert "point_head" not in {field.name for field in dataclasses.fields(ReconstructionConfig)}
