"""benchmarks/refine.py with tiny settings: the command with --refine, timed, with the refine stage's split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.refine import RefineBenchmark, generate_views, known_cameras, main, perturbed, perturbed_truth
from vggt_sparse_ns.images import ImageTransform
from vggt_sparse_ns.pipeline.reconstruction import Reconstruction


def _tiny(tmp_path: Path, checkpoint: Path, **settings: object) -> RefineBenchmark:
    """A CPU run of the tiny model, one downscale, no warm-up, its row in tmp_path/results.json."""
    defaults = {"num_downscales": 1, "warmup_frames": 0, "output": tmp_path / "results.json"}
    return RefineBenchmark(work_dir=tmp_path, checkpoint=checkpoint, device="cpu", **{**defaults, **settings})


def test_a_tiny_run_records_the_refine_stage_and_its_split(tmp_path: Path, vggt_tiny_dir: Path) -> None:
    settings = _tiny(tmp_path, vggt_tiny_dir, frames=3, width=320, height=180)
    row = main(settings)
    rows = json.loads(settings.output.read_text())
    assert len(rows) == 1 and rows[0]["frames"] == 3
    assert row["refine_s"] == row["stages_s"]["refine"] > 0
    assert {"features", "pairs", "matching", "verification", "triangulation"} <= set(row["refine_split_s"])
    assert sum(row["refine_split_s"].values()) <= row["refine_s"] + 1e-3
    assert row["refinement"]["pairs_matched"] >= 2 and row["refinement"]["pairs_verified"] >= 1
    assert row["whole_s"] >= sum(row["stages_s"].values()) - 1e-3


def test_generated_views_overlap_and_are_deterministic(tmp_path: Path) -> None:
    first = generate_views(tmp_path / "a", 4, 160, 90, quality=90)
    second = generate_views(tmp_path / "b", 4, 160, 90, quality=90)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    images = [np.asarray(Image.open(p), dtype=np.float32) for p in first]
    assert images[0].std() > 20, "textured, not blank"
    assert np.abs(images[0] - images[1]).mean() > 1, "the camera moves between frames"


def test_with_the_perturbed_truth_the_refinement_adjusts_every_frame(tmp_path: Path, vggt_tiny_dir: Path) -> None:
    """The tiny model's cameras are garbage (the refinement falls back on them); the perturbed truth is not."""
    settings = _tiny(tmp_path, vggt_tiny_dir, frames=8, width=480, height=270, neighbors=4, perturbed_truth=True)
    row = main(settings)
    assert row["perturbed_truth"] is True
    assert "fallback" not in row["refinement"]
    assert row["refinement"]["registered_frames"] == 8
    assert row["refinement"]["reprojection_error_px"] < 1.0 < row["refinement"]["reprojection_error_px_before"]
    assert row["refine_split_s"]["bundle adjustment"] > 0


def test_the_perturbed_truth_follows_the_file_names_not_the_order() -> None:
    size = (480, 270)
    transform = ImageTransform(size, (60, 34), (0, 0), (0, 0), (60, 34))
    names = [Path(f"view_{index:05d}.jpg") for index in (5, 0, 3)]
    reconstruction = Reconstruction(
        image_paths=names,
        transforms=[transform] * 3,
        T_camera_world=np.zeros((3, 3, 4), np.float32),
        intrinsics=np.zeros((3, 3, 3), np.float32),
        depth=np.zeros((3, 34, 60), np.float32),
        depth_conf=np.ones((3, 34, 60), np.float32),
        colors=np.zeros((3, 34, 60, 3), np.uint8),
    )
    replaced = perturbed_truth(reconstruction, views=6, neighbors=1)
    poses, focal = perturbed(*known_cameras(6, size), seed=0)
    np.testing.assert_allclose(replaced.T_camera_world, poses[[5, 0, 3]], atol=1e-6)
    full_resolution = [transform.intrinsics_to_original(k) for k in replaced.intrinsics]
    np.testing.assert_allclose(full_resolution, focal[[5, 0, 3]], rtol=1e-5)
    assert replaced.graph_edges.max() < 3 and len(replaced.graph_edges) >= 2
