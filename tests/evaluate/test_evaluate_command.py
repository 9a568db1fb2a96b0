"""`vggt-sparse-ns evaluate`: the table, --json, --json-file, and one message with exit status 1 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from camera_sets import in_transformed_world, random_cameras, rotation_about, write_pycolmap_model

from vggt_sparse_ns.scripts.cli import entrypoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """A reference COLMAP model; an output that is the same cameras in another world (nerfstudio's converter made
    its transforms.json); an output with camera 0 turned by 10 degrees."""
    from nerfstudio.process_data.colmap_utils import colmap_to_json

    reference = random_cameras(6, seed=11)
    paths = {"reference": write_pycolmap_model(tmp_path / "reference", reference)}
    moved = in_transformed_world(reference, 3.0, rotation_about([1, 1, 0], 50.0), [1.0, 2.0, 3.0])
    exact = write_pycolmap_model(tmp_path / "exact" / "colmap" / "sparse" / "0", moved)
    colmap_to_json(exact, tmp_path / "exact")
    paths["exact"] = tmp_path / "exact"
    T = reference.T_camera_world.copy()
    T[0, :, :3] = rotation_about([0, 0, 1], 10.0) @ T[0, :, :3]
    T[0, :, 3] = rotation_about([0, 0, 1], 10.0) @ T[0, :, 3]  # turned in place: same centre
    turned = type(reference)(reference.names, T, reference.focal_lengths, reference.sizes, "turned")
    paths["turned"] = write_pycolmap_model(tmp_path / "turned", turned)
    return paths


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vggt_sparse_ns.scripts.cli", "evaluate", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_json_on_stdout_holds_one_run_per_output(runs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    entrypoint(["evaluate", str(runs["exact"]), str(runs["turned"]), "--reference", str(runs["reference"]), "--json"])
    document = json.loads(capsys.readouterr().out)
    exact, turned = document["runs"]
    assert document["reference"] == f"COLMAP model {runs['reference']}"
    assert exact["output"] == f"transforms.json {runs['exact'] / 'transforms.json'}"
    assert exact["frames"]["matched"] == 6 and exact["relative_pose"]["auc"]["30"] == pytest.approx(1.0)
    assert exact["trajectory"]["rmse"] < 1e-9 and exact["trajectory"]["scale"] == pytest.approx(1 / 3)
    # camera 0 turned by 10 degrees in place: its 5 pairs err by 10 degrees in rotation, the other 10 pairs not
    assert turned["relative_pose"]["rotation_accuracy"] == {"1": 10 / 15, "3": 10 / 15, "5": 10 / 15, "15": 1.0}
    assert turned["relative_pose"]["auc"]["30"] == pytest.approx((10 + 5 * (1 - 10 / 30)) / 15)
    assert turned["trajectory"]["rmse"] < 1e-9


def test_the_table_has_a_column_per_output_and_the_json_file_the_same_figures(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    json_file = tmp_path / "figures" / "evaluation.json"
    args = [str(runs["exact"]), str(runs["turned"]), "--reference", str(runs["reference"])]
    entrypoint(["evaluate", *args, "--json-file", str(json_file)])
    table = capsys.readouterr().out
    assert "exact" in table and "turned" in table and "AUC@30" in table
    header = next(line for line in table.splitlines() if "exact" in line)
    assert header.index("exact") < header.index("turned")
    entrypoint(["evaluate", *args, "--json"])
    assert json.loads(json_file.read_text()) == json.loads(capsys.readouterr().out)


def test_a_missing_reference_prints_one_message_and_exits_1(tmp_path: Path, runs: dict[str, Path]) -> None:
    result = _run_cli(str(runs["exact"]), "--reference", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert f"Error: {tmp_path / 'nowhere'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and result.stdout == ""


@pytest.mark.parametrize("frames", [0, 2])
def test_too_few_common_frames_exit_1_and_write_no_json(tmp_path: Path, frames: int, capsys) -> None:
    reference = random_cameras(5)
    names = [f"other_{i}.png" for i in range(5 - frames)] + list(reference.names[:frames])
    output = type(reference)(tuple(names), reference.T_camera_world, reference.focal_lengths, reference.sizes, "o")
    write_pycolmap_model(tmp_path / "output", output)
    write_pycolmap_model(tmp_path / "reference", reference)
    json_file = tmp_path / "figures.json"
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(
            [
                "evaluate",
                str(tmp_path / "output"),
                "--reference",
                str(tmp_path / "reference"),
                "--json-file",
                str(json_file),
            ]
        )
    assert exit_info.value.code == 1
    message = capsys.readouterr().err
    assert ("no frame of" if frames == 0 else "only 2 frame(s)") in message
    assert not json_file.exists() and not np.any([p.name.startswith(".") for p in tmp_path.iterdir()])


def test_a_table_written_to_a_pipe_is_never_wrapped(runs: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    same_folder_twice = [str(runs["exact"]), str(runs["exact"] / "transforms.json"), str(runs["turned"])]
    entrypoint(["evaluate", *same_folder_twice, "--reference", str(runs["reference"])])
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "figure" in line)
    assert all(path in header for path in same_folder_twice), "two columns named alike are headed by their paths"
    assert any("frames matched (output / reference)" in line for line in lines)


def test_an_unwritable_json_file_prints_one_message_and_exits_1(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "figures.json"
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["evaluate", str(runs["exact"]), "--reference", str(runs["reference"]), "--json-file", str(target)])
    assert exit_info.value.code == 1 and f"Error: cannot write {target}" in capsys.readouterr().err
