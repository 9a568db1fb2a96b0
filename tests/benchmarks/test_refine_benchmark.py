"""benchmarks/refine.py with tiny settings: the command with --refine, timed, with the refine stage's split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.refine import RefineBenchmark, generate_views, main


def test_a_tiny_run_records_the_refine_stage_and_its_split(tmp_path: Path, vggt_tiny_dir: Path) -> None:
    settings = RefineBenchmark(
        work_dir=tmp_path,
        frames=3,
        width=320,
        height=180,
        checkpoint=vggt_tiny_dir,
        device="cpu",
        num_downscales=1,
        warmup_frames=0,
        output=tmp_path / "results.json",
    )
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
