"""export_dataset: the files it writes, in which order, and the errors it reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_scene import tiny_dataset

from vggt_sparse_ns.export import ExportConfig, ExportError, export_dataset
from vggt_sparse_ns.timing import StageTimer


def test_a_complete_dataset_is_written_with_frames_in_the_given_order(tmp_path: Path) -> None:
    reconstruction, names = tiny_dataset(tmp_path, frames=3)
    config = ExportConfig(max_points=100, depth=True, colmap=True)
    summary = export_dataset(reconstruction, tmp_path, names[::-1], config)
    transforms = json.loads((tmp_path / "transforms.json").read_text())
    assert [frame["file_path"] for frame in transforms["frames"]] == names[::-1]
    assert transforms["ply_file_path"] == "sparse_pc.ply" and transforms["w"] == 84 and transforms["h"] == 56
    assert [frame["depth_file_path"] for frame in transforms["frames"]] == [
        f"depth/{Path(n).stem}.png" for n in names[::-1]
    ]
    for path in ("sparse_pc.ply", "colmap/sparse/0/cameras.bin", "colmap/sparse/0/images.bin", "depth"):
        assert (tmp_path / path).exists()
    assert json.loads((tmp_path / "vggt/graph.json").read_text()) == {
        "num_frames": 3,
        "strategy": "covisibility",
        "dense": False,
        "edges": [[0, 1], [1, 2]],
    }
    assert summary.num_points <= 100 and summary.ply_file == "sparse_pc.ply" and summary.colmap_dir == "colmap/sparse/0"
    assert not (tmp_path / "vggt/summary.json").exists(), "the run summary is the dataset builder's (tests/dataset)"
    assert summary.depth_flag == f"nerfstudio-data --depth-unit-scale-factor {summary.depth_unit_scale_factor!r}"
    assert not list(tmp_path.rglob("*.tmp")), "no temporary file is left behind"


@pytest.mark.parametrize(
    ("config", "stages"),
    [
        (ExportConfig(), ["point cloud", "write ply", "transforms.json"]),
        (
            ExportConfig(depth=True, colmap=True),
            ["point cloud", "write ply", "depth maps", "colmap model", "transforms.json"],
        ),
    ],
    ids=["default", "depth and colmap"],
)
def test_every_export_step_is_timed_as_its_own_stage(tmp_path: Path, config: ExportConfig, stages: list[str]) -> None:
    reconstruction, names = tiny_dataset(tmp_path, frames=2)
    started: list[tuple[str, bool]] = []
    log = StageTimer(on_start=lambda stage: started.append((stage, (tmp_path / "transforms.json").exists())))
    export_dataset(reconstruction, tmp_path, names, config, log=log)
    assert list(log.seconds()) == stages
    assert started == [(stage, False) for stage in stages], "transforms.json appears only after the last stage"
    assert (tmp_path / "transforms.json").is_file()


def test_dense_attention_is_written_as_a_dense_graph(tmp_path: Path) -> None:
    reconstruction, names = tiny_dataset(tmp_path, frames=2)
    reconstruction.graph_edges = None
    reconstruction.attention = {"strategy": "dense"}
    export_dataset(reconstruction, tmp_path, names, ExportConfig())
    graph = json.loads((tmp_path / "vggt/graph.json").read_text())
    assert graph == {"num_frames": 2, "strategy": "dense", "dense": True, "edges": []}


def test_block_sparse_attention_is_not_written_as_dense(tmp_path: Path) -> None:
    reconstruction, names = tiny_dataset(tmp_path, frames=2)
    reconstruction.graph_edges = None
    reconstruction.attention = {"strategy": "block-sparse"}
    export_dataset(reconstruction, tmp_path, names, ExportConfig())
    graph = json.loads((tmp_path / "vggt/graph.json").read_text())
    assert graph["dense"] is False and graph["edges"] == []


def test_a_failed_export_leaves_no_transforms_json_not_even_an_old_one(tmp_path: Path) -> None:
    reconstruction, names = tiny_dataset(tmp_path, frames=3)
    (tmp_path / "transforms.json").write_text("{}")
    (tmp_path / "colmap").write_text("a file where the COLMAP folder must go")
    with pytest.raises(OSError):
        export_dataset(reconstruction, tmp_path, names, ExportConfig(colmap=True))
    assert not (tmp_path / "transforms.json").exists()


def test_missing_image_is_an_error_naming_the_file(tmp_path: Path) -> None:
    reconstruction, names = tiny_dataset(tmp_path, frames=3)
    (tmp_path / names[1]).unlink()
    with pytest.raises(ExportError, match="frame_00002.png does not exist"):
        export_dataset(reconstruction, tmp_path, names, ExportConfig())


def test_image_of_another_size_than_the_reconstruction_saw_is_an_error(tmp_path: Path) -> None:
    reconstruction, names = tiny_dataset(tmp_path, frames=3)
    Image.new("RGB", (56, 84)).save(tmp_path / names[0])
    with pytest.raises(ExportError, match="56x84 pixels but the reconstruction saw 84x56"):
        export_dataset(reconstruction, tmp_path, names, ExportConfig())


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["images/frame_00001.png"], "1 image names for 3 frames"),
        (["images/frame_00001.png"] * 3, "distinct"),
        (["/abs/a.png", "images/frame_00002.png", "images/frame_00003.png"], "inside the output folder"),
        (["../a.png", "images/frame_00002.png", "images/frame_00003.png"], "inside the output folder"),
    ],
)
def test_bad_image_names_are_errors(tmp_path: Path, names: list[str], message: str) -> None:
    reconstruction, _ = tiny_dataset(tmp_path, frames=3)
    with pytest.raises(ExportError, match=message):
        export_dataset(reconstruction, tmp_path, names, ExportConfig())


def test_inconsistent_reconstruction_arrays_are_an_error(tmp_path: Path) -> None:
    reconstruction, names = tiny_dataset(tmp_path, frames=3)
    reconstruction.colors = reconstruction.colors.astype(np.float32)
    with pytest.raises(ExportError, match="colors must be uint8"):
        export_dataset(reconstruction, tmp_path, names, ExportConfig())


@pytest.mark.parametrize(
    "arguments",
    [{"confidence_percentile": 100.0}, {"max_points": 0}, {"point_source": "mesh"}, {"depth_format": "exr"}],
)
def test_invalid_configuration_is_an_error(arguments: dict) -> None:
    with pytest.raises(ExportError):
        ExportConfig(**arguments)
