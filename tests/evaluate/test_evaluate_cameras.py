"""Reading camera sets: COLMAP models written by pycolmap, transforms.json written by nerfstudio's converter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from camera_sets import random_cameras, write_pycolmap_model

from vggt_sparse_ns.evaluate.cameras import load_cameras
from vggt_sparse_ns.evaluate.errors import EvaluationError


@pytest.mark.parametrize(
    ("text", "legacy"),
    [(False, False), (True, False), (True, True)],
    ids=["binary", "text", "text without rigs and frames"],
)
def test_a_colmap_model_written_by_pycolmap_reads_back_its_poses_and_intrinsics(
    tmp_path: Path, text: bool, legacy: bool
) -> None:
    cameras = random_cameras(5)
    folder = write_pycolmap_model(tmp_path / "sparse" / "0", cameras, text=text)
    if legacy:  # older COLMAP versions write no rigs and frames files
        (folder / "rigs.txt").unlink()
        (folder / "frames.txt").unlink()
    read = load_cameras(folder)
    assert read.names == tuple(Path(name).name for name in cameras.names)
    np.testing.assert_allclose(read.T_camera_world, cameras.T_camera_world, atol=1e-12)
    np.testing.assert_allclose(read.focal_lengths, cameras.focal_lengths)
    np.testing.assert_array_equal(read.sizes, cameras.sizes)


def test_a_one_focal_camera_model_gives_that_focal_for_x_and_y(tmp_path: Path) -> None:
    folder = write_pycolmap_model(tmp_path / "model", random_cameras(3), camera_model="SIMPLE_RADIAL")
    np.testing.assert_allclose(load_cameras(folder).focal_lengths, 500.0)


def test_project_folders_are_searched_for_their_model(tmp_path: Path) -> None:
    cameras = random_cameras(3)
    write_pycolmap_model(tmp_path / "dataset" / "colmap" / "sparse" / "0", cameras)
    write_pycolmap_model(tmp_path / "project" / "sparse" / "0", cameras)
    for folder in ("dataset", "project"):
        np.testing.assert_allclose(load_cameras(tmp_path / folder).T_camera_world, cameras.T_camera_world, atol=1e-12)


def test_nerfstudios_own_converter_output_reads_as_the_model_it_came_from(tmp_path: Path) -> None:
    from nerfstudio.process_data.colmap_utils import colmap_to_json

    cameras = random_cameras(6, seed=4)
    model = write_pycolmap_model(tmp_path / "colmap" / "sparse" / "0", cameras)
    colmap_to_json(model, tmp_path)
    assert json.loads((tmp_path / "transforms.json").read_text())["applied_transform"] != np.eye(4)[:3].tolist()
    from_json = load_cameras(tmp_path / "transforms.json")
    assert [Path(name).name for name in from_json.names] == [Path(name).name for name in cameras.names]
    np.testing.assert_allclose(from_json.T_camera_world, cameras.T_camera_world, atol=1e-12)
    np.testing.assert_allclose(from_json.focal_lengths, cameras.focal_lengths)
    np.testing.assert_array_equal(from_json.sizes, cameras.sizes)
    # the folder holds both: transforms.json wins
    assert load_cameras(tmp_path).source.startswith("transforms.json")


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=f"{tmp_path / 'nowhere'} does not exist"):
        load_cameras(tmp_path / "nowhere")


def test_a_folder_with_neither_says_what_it_looked_for(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="holds neither a transforms.json nor a COLMAP model"):
        load_cameras(tmp_path)


def test_a_truncated_colmap_model_is_one_clear_error(tmp_path: Path) -> None:
    folder = write_pycolmap_model(tmp_path / "model", random_cameras(3))
    data = (folder / "images.bin").read_bytes()
    (folder / "images.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(EvaluationError, match="cannot read the COLMAP model"):
        load_cameras(folder)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read"),
        ('{"camera_model": "OPENCV"}', "has no list of frames"),
        ('{"frames": [{"file_path": "a.png", "transform_matrix": [[1, 0, 0, 0]]}]}', "invalid value"),
        ('{"fl_x": 1, "fl_y": 1, "w": 2, "h": 2, "frames": [{"file_path": "a.png"}]}', "has no 'transform_matrix'"),
    ],
    ids=["not json", "no frames", "bad matrix", "no matrix"],
)
def test_an_invalid_transforms_json_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "transforms.json").write_text(content)
    with pytest.raises(EvaluationError, match=message):
        load_cameras(tmp_path)
