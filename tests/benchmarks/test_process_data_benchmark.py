"""benchmarks/process_data.py with tiny settings: it times the real command, stage by stage, into one JSON row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.process_data import ProcessDataBenchmark, generate_images, main, write_random_checkpoint
from vggt_sparse_ns.model import VGGTConfig, load_pretrained


def test_a_tiny_run_records_every_stage_the_model_time_and_the_ratio(tmp_path: Path, vggt_tiny_dir: Path) -> None:
    settings = ProcessDataBenchmark(
        work_dir=tmp_path,
        frames=3,
        width=64,
        height=48,
        checkpoint=vggt_tiny_dir,
        device="cpu",
        num_downscales=1,
        warmup_frames=2,
        output=tmp_path / "results.json",
    )
    row = main(settings)
    main(settings)

    rows = json.loads(settings.output.read_text())
    assert len(rows) == 1 and rows[0]["frames"] == 3, "a second run replaces the row of the same settings"
    stages = list(row["stages_s"])
    assert stages[:4] == ["probe images", "load model", "load images", "inference"]
    assert stages[-3:] == ["depth maps", "transforms.json", "move into place"]
    assert list(row["during_inference_s"]) == ["write images"]
    assert list(row["warmup_stages_s"]) == stages
    assert row["model_s"] == row["stages_s"]["inference"] > 0
    assert row["whole_s"] >= sum(row["stages_s"].values()) - 1e-3
    assert row["whole_over_model"] == pytest.approx(row["whole_s"] / row["model_s"], abs=0.01)
    assert len(list((tmp_path / "out" / "images_2").iterdir())) == 3


def test_generated_images_are_deterministic_textured_jpegs_of_the_asked_size(tmp_path: Path) -> None:
    first = [path.read_bytes() for path in generate_images(tmp_path / "a", 2, 64, 48, quality=90)]
    second = [path.read_bytes() for path in generate_images(tmp_path / "b", 2, 64, 48, quality=90)]
    assert first == second and first[0] != first[1]
    assert len(generate_images(tmp_path / "a", 1, 64, 48, quality=90)) == 1
    assert sorted(path.name for path in (tmp_path / "a").iterdir()) == ["image_00000.jpg"], "extra images removed"


def test_the_random_checkpoint_loads_strictly(tmp_path: Path, vggt_tiny_config: dict) -> None:
    config = VGGTConfig.from_dict(vggt_tiny_config)
    write_random_checkpoint(tmp_path / "checkpoint", "cpu", config)
    model = load_pretrained(tmp_path / "checkpoint")
    assert model.config == config
    assert any(parameter.abs().sum() > 0 for parameter in model.parameters() if parameter.dim() > 1)
    assert torch.isfinite(next(model.parameters())).all()
