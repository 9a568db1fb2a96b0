"""The installed commands, run as a user runs them: ns-process-data-vggt and the hooked ns-process-data vggt-sparse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from image_files import write_scene
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from PIL import Image

SCRIPTS = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def run_script(*args: str | Path) -> subprocess.CompletedProcess:
    command = [str(SCRIPTS / str(args[0])), *map(str, args[1:])]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def check_dataset(images: list[Path], out: Path) -> None:
    transforms = json.loads((out / "transforms.json").read_text())
    names = [f"frame_{index:05d}.png" for index in range(1, len(images) + 1)]
    assert sorted(frame["file_path"] for frame in transforms["frames"]) == [f"images/{name}" for name in names]
    assert transforms["ply_file_path"] == "sparse_pc.ply" and (out / "sparse_pc.ply").is_file()
    for source, name in zip(images, names, strict=True):
        with Image.open(out / "images" / name) as copied, Image.open(source) as original:
            np.testing.assert_array_equal(np.asarray(copied), np.asarray(original))  # re-encoded by nerfstudio's ffmpeg
        assert (out / "images_2" / name).is_file()
    assert (out / "vggt" / "summary.json").is_file() and (out / "vggt" / "graph.json").is_file()
    config = NerfstudioDataParserConfig(data=out, load_3D_points=True, eval_mode="all", downscale_factor=1)
    outputs = config.setup().get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == len(images)
    assert outputs.metadata["points3D_xyz"].shape[0] > 0


@pytest.mark.parametrize(
    "command", [("ns-process-data-vggt",), ("ns-process-data", "vggt-sparse")], ids=["own script", "hooked"]
)
def test_the_command_makes_a_dataset_nerfstudio_loads(tmp_path: Path, vggt_tiny_dir: Path, command) -> None:
    images = write_scene(tmp_path / "photos", count=3)
    out = tmp_path / "dataset"
    result = run_script(
        *command, "--data", images[0].parent, "--output-dir", out, "--checkpoint", vggt_tiny_dir,
        "--device", "cpu", "--num-downscales", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All DONE" in result.stdout
    check_dataset(images, out)


def test_the_hooked_command_exits_non_zero_on_bad_input(tmp_path: Path) -> None:
    result = run_script(
        "ns-process-data", "vggt-sparse", "--data", tmp_path / "missing", "--output-dir", tmp_path / "o"
    )
    assert result.returncode == 1, "nerfstudio's own entrypoint would have exited 0"
    assert f"Error: --data {tmp_path / 'missing'} does not exist." in result.stderr
