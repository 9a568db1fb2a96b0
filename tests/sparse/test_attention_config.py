"""SparseAttentionConfig: one dataclass picks the strategy; usable from Python and through tyro."""

from __future__ import annotations

import pytest
import torch
import tyro

from vggt_sparse_ns.sparse import (
    BlockSparseAttention,
    CovisibilityAttention,
    DenseAttention,
    FrameGraphSource,
    LayerSelection,
    SparseAttentionConfig,
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("dense", DenseAttention), ("covisibility", CovisibilityAttention), ("block-sparse", BlockSparseAttention)],
)
def test_build_returns_the_chosen_strategy(name, kind):
    assert isinstance(SparseAttentionConfig(strategy=name).build(), kind)


def test_layer_choices_wrap_the_strategy():
    built = SparseAttentionConfig(strategy="dense", frame_layers=(0, 1), dense_layers=(5,)).build()
    assert isinstance(built, LayerSelection)
    assert isinstance(built.strategy, DenseAttention)
    assert (built.frame_layers, built.dense_layers) == ((0, 1), (5,))


def test_dense_layers_under_another_strategy_take_the_dense_settings():
    dense = DenseAttention(implementation="sdpa")
    built = SparseAttentionConfig(strategy="block-sparse", dense=dense, dense_layers=(2,)).build()
    assert built.dense is dense


def test_command_line_names_each_strategys_implementation():
    args = ["--dense.implementation", "sdpa", "--covisibility.implementation", "gather"]
    config = tyro.cli(SparseAttentionConfig, args=[*args, "--block-sparse.implementation", "mask"])
    assert config.dense.implementation == "sdpa"
    assert config.covisibility.implementation == "gather"
    assert config.block_sparse.implementation == "mask"


def test_given_descriptors_reach_the_frame_graph():
    descriptors = torch.ones(3, 4)
    covisibility = SparseAttentionConfig(strategy="covisibility").build(descriptors=descriptors)
    assert covisibility.descriptors is descriptors
    restricted = BlockSparseAttention(covisible_only=FrameGraphSource(neighbors=2))
    block_sparse = SparseAttentionConfig(strategy="block-sparse", block_sparse=restricted).build(
        descriptors=descriptors
    )
    assert block_sparse.covisible_only.descriptors is descriptors


def test_command_line_sets_the_strategy_and_its_settings():
    args = ["--strategy", "block-sparse", "--block-sparse.top-ratio", "0.5", "--frame-layers", "0", "1"]
    config = tyro.cli(SparseAttentionConfig, args=args)
    assert config.strategy == "block-sparse"
    assert config.block_sparse.top_ratio == 0.5
    assert config.frame_layers == (0, 1)


def test_command_line_help_shows_settings_but_not_tensor_inputs(capsys):
    with pytest.raises(SystemExit):
        tyro.cli(SparseAttentionConfig, args=["--help"])
    help_text = capsys.readouterr().out
    assert "--covisibility.neighbors" in help_text
    assert "--covisibility.descriptors" not in help_text
    assert "--covisibility.graph" not in help_text
