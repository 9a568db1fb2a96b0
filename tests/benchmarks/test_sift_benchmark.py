"""benchmarks/sift.py with tiny settings: both SIFTs timed on the same generated views."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.sift import SiftBenchmark, main


def test_a_tiny_run_times_both_sifts_and_records_the_row(tmp_path: Path) -> None:
    settings = SiftBenchmark(
        work_dir=tmp_path,
        frames=2,
        width=320,
        height=180,
        max_features=500,
        device="cpu",
        output=tmp_path / "rows.json",
    )
    row = main(settings)
    assert json.loads(settings.output.read_text()) == [row]
    for key in ("torch_images_per_s", "torch_sift_alone_images_per_s", "pycolmap_images_per_s"):
        assert row[key] > 0
    assert 50 < row["torch_keypoints_per_image"] <= 500 and row["pycolmap_keypoints_per_image"] > 50
