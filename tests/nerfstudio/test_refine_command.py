"""``ns-process-data vggt-sparse --refine``: the option on the command line, and a whole run with the tiny
fixture model (random weights: garbage cameras) that completes, reports the refinement and falls back where
it must."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import torch
import tyro
from refine.textured_scene import make_scene

from vggt_sparse_ns.export.config import ExportConfig
from vggt_sparse_ns.nerfstudio.process_data import ProcessVGGTSparse
from vggt_sparse_ns.refine import RefineConfig

REQUIRED_FIGURES = (
    "reprojection_error_px",
    "reprojection_error_px_before",
    "registered_frames",
    "kept_frames",
    "points",
    "observations",
    "pairs_matched",
    "pairs_verified",
    "seconds",
)


def test_the_refine_flags_reach_the_command_without_prefixes(tmp_path: Path) -> None:
    command = tyro.cli(
        ProcessVGGTSparse,
        args=[
            *("--data", str(tmp_path), "--output-dir", str(tmp_path / "out")),
            *("--refine", "--refine-camera-model", "OPENCV", "--refine-max-image-size", "1024"),
        ],
    )
    assert command.refinement == RefineConfig(refine=True, refine_camera_model="OPENCV", refine_max_image_size=1024)
    assert ProcessVGGTSparse(data=tmp_path, output_dir=tmp_path).refinement.refine is False


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without Apple's GPU")
def test_a_refine_device_the_machine_lacks_fails_in_one_line_before_inference(
    tmp_path: Path, vggt_tiny_dir: Path, run_command, monkeypatch
) -> None:
    make_scene(tmp_path / "photos", frames=2)
    monkeypatch.setattr(ProcessVGGTSparse, "_probe_folders", lambda self: pytest.fail("the run went on"))
    status, output = run_command(
        tmp_path / "photos", tmp_path / "out", refinement=RefineConfig(refine=True, refine_device="mps")
    )
    assert status == 1
    assert output == "Error: --refine-device mps: there is no mps device here (try auto or cpu)"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("images", ["fixture", "textured"])
def test_refine_and_colmap_on_garbage_cameras_complete_with_a_clear_summary(
    tmp_path: Path, vggt_tiny_dir: Path, run_command, images: str
) -> None:
    data = tmp_path / "photos"
    if images == "fixture":  # smooth images: few features, the refinement falls back
        data.mkdir()
        for path in sorted(vggt_tiny_dir.glob("img*.png")):
            shutil.copy(path, data / path.name)
    else:
        make_scene(data, frames=4, blank_frame=3)
    status, output = run_command(
        data, tmp_path / "out", refinement=RefineConfig(refine=True), export=ExportConfig(colmap=True)
    )
    assert status == 0, output
    figures = json.loads((tmp_path / "out" / "vggt" / "summary.json").read_text())["refinement"]
    assert set(REQUIRED_FIGURES) <= set(figures)
    assert "Refinement" in output and "refine" in output.split("Time:")[1]
    if "fallback" in figures:
        assert "Refinement kept VGGT's cameras:" in output
        assert figures["kept_frames"] == [0, 1, 2, 3]
    else:
        assert f"{figures['registered_frames']} frames adjusted" in output
        assert figures["reprojection_error_px"] < figures["reprojection_error_px_before"]
    model = pycolmap.Reconstruction(tmp_path / "out" / "colmap" / "sparse" / "0")
    assert model.num_images() == 4
    assert model.num_points3D() == figures["points"]
    assert model.compute_num_observations() == figures["observations"]
    transforms = json.loads((tmp_path / "out" / "transforms.json").read_text())
    assert len(transforms["frames"]) == 4 and np.isfinite(transforms["frames"][0]["transform_matrix"]).all()


@pytest.mark.slow
def test_the_dataparser_refines_its_cache_and_reconstructs_again_when_the_refinement_changes(
    tmp_path: Path, vggt_tiny_dir: Path, monkeypatch
) -> None:
    import vggt_sparse_ns.pipeline.run as run_module
    from vggt_sparse_ns.nerfstudio.dataparser import VGGTSparseDataParserConfig
    from vggt_sparse_ns.pipeline.config import ReconstructionConfig

    calls = []
    reconstruct = run_module.reconstruct
    monkeypatch.setattr(run_module, "reconstruct", lambda *a, **k: calls.append(1) or reconstruct(*a, **k))
    data = tmp_path / "room"
    make_scene(data, frames=3)

    def parse(refinement: RefineConfig) -> None:
        VGGTSparseDataParserConfig(
            data=data,
            reconstruction=ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"),
            refinement=refinement,
            num_downscales=1,
            eval_mode="all",
            downscale_factor=1,
        ).setup().get_dataparser_outputs("train")

    parse(RefineConfig(refine=True))
    summary = json.loads((tmp_path / "room-vggt-sparse" / "vggt" / "summary.json").read_text())
    assert set(REQUIRED_FIGURES) <= set(summary["refinement"])
    parse(RefineConfig(refine=True))
    assert len(calls) == 1, "the same settings reuse the cache"
    parse(RefineConfig(refine=True, refine_camera_model="OPENCV"))
    assert len(calls) == 2, "other refinement settings reconstruct again"
