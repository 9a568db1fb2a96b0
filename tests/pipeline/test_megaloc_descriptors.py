"""--descriptors megaloc: MegaLoc decides which frames attend to each other."""

from __future__ import annotations

import numpy as np

from vggt_sparse_ns.images import load_images
from vggt_sparse_ns.pipeline import ReconstructionConfig, reconstruct
from vggt_sparse_ns.sparse import CovisibilityAttention
from vggt_sparse_ns.sparse.megaloc import load_megaloc, megaloc_descriptors
from vggt_sparse_ns.timing import StageTimer


def test_megaloc_descriptors_build_the_frame_graph(tmp_path, write_image, vggt_tiny_dir, megaloc_tiny_dir) -> None:
    scene = [write_image(tmp_path / f"{index}.png", 96, 24) for index in range(5)]
    config = ReconstructionConfig(
        checkpoint=str(vggt_tiny_dir),
        device="cpu",
        attention="covisibility",
        neighbors=1,
        descriptors="megaloc",
        megaloc_checkpoint=str(megaloc_tiny_dir),
    )
    log = StageTimer()
    result = reconstruct(scene, config, log)

    descriptors = megaloc_descriptors(load_megaloc(megaloc_tiny_dir), load_images(scene).tensor)
    graph = CovisibilityAttention(neighbors=1).build(descriptors).with_reference_edges()
    src, dst = graph.edges()
    expected = {(min(i, j), max(i, j)) for i, j in zip(src.tolist(), dst.tolist(), strict=True)}
    assert {tuple(edge) for edge in result.graph_edges.tolist()} == expected
    assert result.attention["graph_source"] == "given descriptors"
    assert list(log.seconds()) == ["load model", "load images", "megaloc descriptors", "inference"]


def test_dense_attention_does_not_load_megaloc_and_says_so(tmp_path, write_image, vggt_tiny_dir, caplog) -> None:
    scene = [write_image(tmp_path / f"{index}.png", 96, 24) for index in range(2)]
    config = ReconstructionConfig(
        checkpoint=str(vggt_tiny_dir), device="cpu", attention="dense", descriptors="megaloc",
        megaloc_checkpoint=str(tmp_path / "no-such-megaloc"),
    )  # fmt: skip
    result = reconstruct(scene, config)
    assert result.attention == {"strategy": "dense", "implementation": "sdpa", "query_chunks": False}  # CPU
    assert np.isfinite(result.depth).all()
    assert [record.getMessage() for record in caplog.records if "--descriptors megaloc" in record.getMessage()]
