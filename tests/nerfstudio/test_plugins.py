"""The nerfstudio plugins: the vggt-sparse dataparser and the vggt-splatfacto method."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from image_files import write_rgb, write_scene
from PIL import Image

import vggt_sparse_ns.export
import vggt_sparse_ns.pipeline.run as run_module
from vggt_sparse_ns.export.config import ExportConfig
from vggt_sparse_ns.nerfstudio.dataparser import VGGTSparseDataParserConfig
from vggt_sparse_ns.pipeline.config import ReconstructionConfig


@pytest.mark.slow
def test_both_plugins_are_in_nerfstudios_registries_used_by_ns_train() -> None:
    from nerfstudio.configs.dataparser_configs import all_dataparsers
    from nerfstudio.configs.method_configs import all_descriptions, all_methods

    assert isinstance(all_dataparsers["vggt-sparse"], VGGTSparseDataParserConfig)
    method, splatfacto = all_methods["vggt-splatfacto"], all_methods["splatfacto"]
    assert "VGGT" in all_descriptions["vggt-splatfacto"]
    assert method.method_name == "vggt-splatfacto"
    assert method.pipeline.model.camera_optimizer.mode == "SO3xR3"
    assert splatfacto.pipeline.model.camera_optimizer.mode == "off", "splatfacto itself is left unchanged"
    dataparser = method.pipeline.datamanager.dataparser
    assert isinstance(dataparser, VGGTSparseDataParserConfig) and dataparser.load_3D_points
    assert method.optimizers.keys() == splatfacto.optimizers.keys() and "camera_opt" in method.optimizers
    assert method.max_num_iterations == splatfacto.max_num_iterations


@pytest.mark.slow
def test_entry_point_modules_do_not_import_the_model_images_or_writers() -> None:
    """viser is left out: nerfstudio's own dataparser imports it."""
    heavy = (
        "vggt_sparse_ns.model",
        "vggt_sparse_ns.pipeline.run",
        "vggt_sparse_ns.images",
        "vggt_sparse_ns.export.dataset",
    )
    code = (
        "import sys, vggt_sparse_ns.nerfstudio.dataparser, vggt_sparse_ns.nerfstudio.method; "
        f"print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_default_cache_is_a_sibling_of_the_input_also_for_relative_paths(tmp_path: Path, monkeypatch) -> None:
    garden = tmp_path.resolve() / "garden"
    (garden / "sub").mkdir(parents=True)
    monkeypatch.chdir(garden)
    for relative in (Path("."), Path("sub/..")):
        assert VGGTSparseDataParserConfig(data=relative).dataset_dir == garden.with_name("garden-vggt-sparse")


@pytest.fixture
def tiny_dataparser(vggt_tiny_dir: Path):
    def make(data: Path, **fields) -> VGGTSparseDataParserConfig:
        reconstruction = ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu")
        return VGGTSparseDataParserConfig(
            data=data, reconstruction=reconstruction, num_downscales=1, eval_mode="all", downscale_factor=1, **fields
        )

    return make


def count_reconstructions(monkeypatch) -> list:
    """The reconstructions run from now on (the dataset layer's calls)."""
    calls: list = []
    reconstruct = run_module.reconstruct

    def counted(*args, **kwargs):
        calls.append(reconstruct(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(run_module, "reconstruct", counted)
    return calls


@pytest.mark.slow
def test_the_dataparser_caches_one_reconstruction_beside_a_plain_folder_and_reads_datasets_as_they_are(
    tmp_path: Path, tiny_dataparser, monkeypatch
) -> None:
    data = tmp_path / "garden"
    write_scene(data, count=2)
    calls = count_reconstructions(monkeypatch)

    outputs = tiny_dataparser(data).setup().get_dataparser_outputs("train")

    cache = tmp_path / "garden-vggt-sparse"
    assert [path.parent for path in outputs.image_filenames] == [cache / "images"] * 2
    assert outputs.metadata["points3D_xyz"].shape[0] > 0
    assert sorted(path.name for path in data.iterdir()) == ["view_00.png", "view_01.png"], "the input stays as it was"
    tiny_dataparser(data).setup().get_dataparser_outputs("train")
    assert len(calls) == 1, "an unchanged folder reuses the cache"

    write_rgb(data / "view_02.png", seed=7)
    assert len(tiny_dataparser(data).setup().get_dataparser_outputs("train").image_filenames) == 3
    assert len(calls) == 2, "a changed folder is reconstructed again"

    assert len(tiny_dataparser(cache).setup().get_dataparser_outputs("train").image_filenames) == 3
    assert len(calls) == 2, "a processed dataset (a folder with transforms.json) is read as it is"


@pytest.mark.slow
def test_the_dataparser_reads_the_cached_depth_maps_in_the_units_they_were_written_in(
    tmp_path: Path, tiny_dataparser, monkeypatch
) -> None:
    data = tmp_path / "garden"
    write_scene(data, count=2)
    calls = count_reconstructions(monkeypatch)
    config = tiny_dataparser(data, export=ExportConfig(depth=True, depth_format="png"))

    for _ in range(2):  # built, then reused from the cache
        outputs = config.setup().get_dataparser_outputs("train")
        unit = outputs.metadata["depth_unit_scale_factor"]
        read = np.asarray(Image.open(outputs.metadata["depth_filenames"][0]), dtype=np.float64) * unit
        depth = calls[0].depth
        assert depth.min() * 0.999 <= read[read > 0].max() <= depth.max() * 1.001, "nerfstudio reads VGGT's depths"
    assert len(calls) == 1


@pytest.mark.slow
def test_an_interrupted_rebuild_of_a_stale_cache_leaves_the_previous_cache_and_nothing_beside_it(
    tmp_path: Path, tiny_dataparser, monkeypatch
) -> None:
    data = tmp_path / "garden"
    write_scene(data, count=2)
    tiny_dataparser(data).setup().get_dataparser_outputs("train")
    cache = tmp_path / "garden-vggt-sparse"
    before = {path.relative_to(cache): path.read_bytes() for path in cache.rglob("*") if path.is_file()}
    write_rgb(data / "view_02.png", seed=7)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vggt_sparse_ns.export, "export_dataset", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tiny_dataparser(data).setup().get_dataparser_outputs("train")

    assert {path.relative_to(cache): path.read_bytes() for path in cache.rglob("*") if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["garden", "garden-vggt-sparse"]


@pytest.mark.slow
def test_the_process_data_command_module_imports_no_torch_for_nerfstudios_help() -> None:
    code = "import sys, vggt_sparse_ns.nerfstudio.process_data; print('torch' in sys.modules)"
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment)
    assert result.stdout.strip() == "False"
