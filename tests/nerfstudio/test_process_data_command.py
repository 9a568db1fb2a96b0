"""``ns-process-data vggt-sparse`` in-process: datasets nerfstudio reads, and one clear failure per bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from command_stages import STAGES
from image_files import (
    write_16bit_png,
    write_exif_rotated_jpeg,
    write_gray_png,
    write_not_a_video,
    write_not_an_image,
    write_rgb,
    write_rgba_png,
    write_scene,
    write_truncated_jpeg,
)
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.process_data import process_data_utils
from PIL import Image, ImageOps

import vggt_sparse_ns.export
import vggt_sparse_ns.nerfstudio.process_data as command_module
import vggt_sparse_ns.viewer
from vggt_sparse_ns.export import ExportError
from vggt_sparse_ns.export.config import ExportConfig
from vggt_sparse_ns.model import VGGT
from vggt_sparse_ns.nerfstudio import report
from vggt_sparse_ns.nerfstudio.process_data import ProcessVGGTSparse
from vggt_sparse_ns.pipeline.config import ReconstructionConfig
from vggt_sparse_ns.timing import StageTimer


def parse(dataset: Path, **fields):
    config = NerfstudioDataParserConfig(data=dataset, eval_mode="all", downscale_factor=1, **fields)
    return config.setup().get_dataparser_outputs("train")


def assert_failed_cleanly(status: int, output: str, message: str, output_dir: Path) -> None:
    assert status == 1
    assert message in output
    assert not (output_dir / "transforms.json").exists()


@pytest.mark.slow
def test_awkward_images_make_a_dataset_whose_pixels_match_what_vggt_saw(tmp_path: Path, run_command) -> None:
    data = tmp_path / "photos"
    data.mkdir()
    rotated = write_exif_rotated_jpeg(data / "a_rotated.jpg", 24, 96, orientation=6)
    write_16bit_png(data / "b_16bit.png")
    write_gray_png(data / "c_gray.png")
    write_rgba_png(data / "d_rgba.png")
    broken = write_truncated_jpeg(data / "e_broken.jpg")
    out = tmp_path / "out"

    status, output = run_command(data, out)

    assert status == 0, output
    assert f"Warning: skipping image {broken}: unreadable: " in output
    assert "4 frames reconstructed" in output and "(1 image skipped: 1 unreadable)" in output
    outputs = parse(out, load_3D_points=True)
    assert len(outputs.image_filenames) == 4
    for index, filename in enumerate(outputs.image_filenames):
        with Image.open(filename) as image:
            assert image.size == (outputs.cameras.width[index].item(), outputs.cameras.height[index].item())
            assert image.mode in ("RGB", "RGBA", "L"), "nerfstudio's loader reads these modes correctly"
        assert (out / "images_2" / filename.name).is_file()
    with Image.open(rotated) as original, Image.open(out / "images" / "frame_00001.png") as written:
        upright = np.asarray(ImageOps.exif_transpose(original).convert("RGB"))
        assert written.size == (96, 24), "stored 24x96, shown (and reconstructed) upright as 96x24"
        np.testing.assert_array_equal(np.asarray(written), upright)
    assert outputs.metadata["points3D_xyz"].shape[0] > 0
    assert "Global attention: dense" in output and "Points written" in output


@pytest.mark.slow
def test_a_tiny_image_is_skipped_with_a_warning_and_a_16000x12000_jpeg_makes_a_frame(
    tmp_path: Path, run_command, huge_jpeg: Path
) -> None:
    data = tmp_path / "photos"
    write_scene(data, count=2)
    (data / "a_huge.jpg").symlink_to(huge_jpeg)
    tiny = write_rgb(data / "tiny.png", 10, 10)
    out = tmp_path / "out"

    status, output = run_command(data, out, export=ExportConfig(depth=True))

    assert status == 0, output
    assert f"Warning: skipping image {tiny}: too small: 10x10 pixels, a side needs at least 16" in output
    assert "3 frames reconstructed" in output and "(1 image skipped: 1 too small)" in output
    assert "unreadable" not in output
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    assert [frame["file_path"] for frame in frames] == [
        f"images/frame_0000{i}.{s}" for i, s in ((1, "jpg"), (2, "png"), (3, "png"))
    ]
    assert (frames[0]["w"], frames[0]["h"]) == (16000, 12000)
    assert (out / "images" / "frame_00001.jpg").read_bytes() == huge_jpeg.read_bytes()
    with (
        Image.open(out / "images_2" / "frame_00001.jpg") as half,
        Image.open(out / frames[0]["depth_file_path"]) as depth,
    ):
        assert half.size == (8000, 6000)
        assert depth.size == (4000, 3000), "depth maps are capped at MAX_DEPTH_PIXELS"


def test_every_step_of_the_command_is_a_timed_stage_in_the_summary(tmp_path: Path, vggt_tiny_dir: Path, capsys):
    data = write_scene(tmp_path / "photos", count=2)[0].parent
    timer = StageTimer()
    ProcessVGGTSparse(
        data=data,
        output_dir=tmp_path / "out",
        num_downscales=1,
        reconstruction=ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"),
        export=ExportConfig(depth=True, colmap=True),
    ).main(timer=timer)

    assert list(timer.seconds()) == [*STAGES, "move into place"]
    assert list(timer.seconds_beside()) == ["write images"] and timer.seconds_beside()["write images"][0] == "inference"
    summary = json.loads((tmp_path / "out" / "vggt" / "summary.json").read_text())
    assert list(summary["seconds"]) == STAGES, "vggt/summary.json times the export stages too (not its own swap)"
    assert summary["seconds_beside"]["write images"]["during"] == "inference"
    output = " ".join(capsys.readouterr().out.split())
    assert "Time: probe images" in output and "depth maps" in output and "(total" in output
    assert "write images" in output and "(during inference)" in output


def test_a_failed_reconstruction_leaves_no_output_folder_and_no_staged_images(
    tmp_path: Path, vggt_tiny_dir: Path, monkeypatch
):
    output_dir = tmp_path / "out"
    staged = tmp_path / ".out.vggt-staging" / "images"
    staged_counts = []

    def run_out_of_memory(*args, **kwargs):
        deadline = time.monotonic() + 10
        while len(list(staged.glob("*.png"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the images are being staged meanwhile
        staged_counts.append(len(list(staged.glob("*.png"))))
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    data = write_scene(tmp_path / "photos", count=3)[0].parent
    monkeypatch.setattr(VGGT, "forward", run_out_of_memory)
    assert exit_status_of_a_run_on(data, output_dir, vggt_tiny_dir) != 0
    assert staged_counts == [3], "the images were staged while the model ran"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photos"], "no output folder, nothing beside it"


def test_a_model_failure_stops_the_image_writers_and_keeps_the_previous_dataset(
    tmp_path: Path, vggt_tiny_dir: Path, monkeypatch
):
    data = write_scene(tmp_path / "photos", count=3)[0].parent
    output_dir = tmp_path / "out"
    config = ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu")
    ProcessVGGTSparse(data=data, output_dir=output_dir, num_downscales=1, reconstruction=config).main()
    before = {path.relative_to(output_dir): path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}

    def fail(*args, **kwargs):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(VGGT, "forward", fail)
    with pytest.raises(SystemExit):
        ProcessVGGTSparse(data=data, output_dir=output_dir, num_downscales=1, reconstruction=config).main()
    after = {path.relative_to(output_dir): path.read_bytes() for path in output_dir.rglob("*") if path.is_file()}
    assert after == before


def test_images_written_during_inference_replace_a_previous_runs_images(tmp_path: Path, vggt_tiny_dir: Path):
    data = write_scene(tmp_path / "photos", count=2)[0].parent
    output_dir = tmp_path / "out"
    (output_dir / "images_4").mkdir(parents=True)
    (output_dir / "images" / "frame_00009.png").parent.mkdir()
    (output_dir / "images" / "frame_00009.png").write_bytes(b"old")
    config = ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu")
    ProcessVGGTSparse(data=data, output_dir=output_dir, num_downscales=1, reconstruction=config).main()
    assert sorted(path.name for path in (output_dir / "images").iterdir()) == ["frame_00001.png", "frame_00002.png"]
    assert sorted(path.name for path in (output_dir / "images_2").iterdir()) == ["frame_00001.png", "frame_00002.png"]
    assert not (output_dir / "images_4").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "photos"], "nothing left beside the output"


def test_images_already_inside_the_output_folder_are_used_in_place_then_viewed(
    tmp_path: Path, run_command, monkeypatch
) -> None:
    out = tmp_path / "out"
    inputs = write_scene(out / "images", count=2)
    before = [path.read_bytes() for path in inputs]
    served = []
    monkeypatch.setattr(vggt_sparse_ns.viewer, "serve_reconstruction", lambda *args, **kwargs: served.append(args))

    status, output = run_command(out / "images", out, skip_image_processing=True, view=True)

    assert status == 0, output
    assert [args[0] for args in served] == [out]
    frames = json.loads((out / "transforms.json").read_text())["frames"]
    assert sorted(frame["file_path"] for frame in frames) == ["images/view_00.png", "images/view_01.png"]
    assert [path.read_bytes() for path in inputs] == before
    assert not (out / "images_2").exists()
    assert len(parse(out).image_filenames) == 2


def test_eval_images_get_nerfstudios_train_and_eval_names(tmp_path: Path, run_command) -> None:
    train, evaluation = write_scene(tmp_path / "train", count=2), write_scene(tmp_path / "eval", count=1)
    out = tmp_path / "out"

    status, output = run_command(train[0].parent, out, eval_data=evaluation[0].parent)

    assert status == 0, output
    names = sorted(path.name for path in (out / "images").iterdir())
    assert names == ["frame_eval_00001.png", "frame_train_00001.png", "frame_train_00002.png"]
    config = NerfstudioDataParserConfig(data=out, eval_mode="filename", downscale_factor=1)
    assert [path.name for path in config.setup().get_dataparser_outputs("test").image_filenames] == names[:1]


def test_a_point_cloud_from_the_point_map_runs_the_point_head(tmp_path: Path, run_command) -> None:
    data = write_scene(tmp_path / "photos", count=2)[0].parent
    status, output = run_command(data, tmp_path / "out", export=ExportConfig(point_source="points"))
    assert status == 0, output
    assert "points, confidence" in output


def test_an_export_failure_after_the_images_were_written_leaves_the_previous_files_as_they_were(
    tmp_path: Path, run_command, monkeypatch
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "transforms.json").write_text('{"frames": []}')

    def fail(*args, **kwargs):
        raise ExportError("cannot export")

    monkeypatch.setattr(vggt_sparse_ns.export, "export_dataset", fail)
    status, output = run_command(write_scene(tmp_path / "photos", count=2)[0].parent, out)
    assert status == 1 and "Error: cannot export" in output
    assert sorted(path.name for path in out.iterdir()) == ["transforms.json"]
    assert (out / "transforms.json").read_text() == '{"frames": []}'


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda folder: folder / "missing", "does not exist"),
        (lambda folder: folder, "No images in"),
        (lambda folder: write_not_an_image(folder / "notes.txt").parent, "No images in"),
        (lambda folder: write_not_an_image(folder / "fake.png").parent, "0 usable image(s)"),
        (lambda folder: write_rgb(folder / "only.png").parent, "1 usable image(s)"),
    ],
    ids=["missing folder", "empty folder", "no images", "only unreadable files", "single image"],
)
def test_unusable_input_folders_fail_before_anything_is_written(tmp_path: Path, run_command, make_input, message):
    data = tmp_path / "input"
    data.mkdir()
    out = tmp_path / "out"
    status, output = run_command(make_input(data), out)
    assert_failed_cleanly(status, output, message, out)
    assert not out.exists()


def test_an_output_folder_inside_the_input_is_refused(tmp_path: Path, run_command) -> None:
    data = write_scene(tmp_path / "photos", count=2)[0].parent
    status, output = run_command(data, data / "dataset")
    assert_failed_cleanly(status, output, "is inside --data", data / "dataset")
    assert not (data / "dataset").exists()


def test_in_place_images_outside_the_output_folder_are_refused(tmp_path: Path, run_command) -> None:
    data = write_scene(tmp_path / "photos", count=2)[0].parent
    status, output = run_command(data, tmp_path / "out", skip_image_processing=True)
    assert_failed_cleanly(status, output, "must be inside --output-dir", tmp_path / "out")


def test_in_place_images_nerfstudio_would_misread_are_refused(tmp_path: Path, run_command) -> None:
    out = tmp_path / "out"
    write_scene(out / "images", count=1)
    write_exif_rotated_jpeg(out / "images" / "rotated.jpg")
    status, output = run_command(out / "images", out, skip_image_processing=True)
    assert_failed_cleanly(status, output, "Run without --skip-image-processing", out)


def test_an_image_folder_needs_no_ffmpeg_for_its_copies_and_downscales(tmp_path: Path, run_command, monkeypatch):
    monkeypatch.setattr(command_module.shutil, "which", lambda name: None)
    data = write_scene(tmp_path / "photos", count=2)[0].parent
    status, output = run_command(data, tmp_path / "out", num_downscales=2)
    assert status == 0, output
    assert sorted(path.name for path in (tmp_path / "out" / "images_4").iterdir()) == [
        "frame_00001.png",
        "frame_00002.png",
    ]


def test_a_video_without_ffmpeg_is_refused_with_its_name(tmp_path: Path, run_command, monkeypatch) -> None:
    monkeypatch.setattr(command_module.shutil, "which", lambda name: None)
    video = tmp_path / "walk.mp4"
    video.write_bytes(b"not decoded: ffmpeg is looked for first")
    status, output = run_command(video, tmp_path / "out")
    assert_failed_cleanly(status, output, "ffmpeg was not found", tmp_path / "out")


def exit_status_of_a_run_on(data: Path, output_dir: Path, vggt_tiny_dir: Path) -> int:
    """The exit status of the command on ``data`` (a folder or a video) with the tiny model on the CPU (it is
    expected to fail)."""
    with pytest.raises(SystemExit) as exit_info:
        ProcessVGGTSparse(
            data=data,
            output_dir=output_dir,
            reconstruction=ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"),
        ).main()
    return exit_info.value.code


def write_audio_only(path: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.2", str(path)], check=True)
    return path


@pytest.mark.parametrize(
    ("make_video", "reason"),
    [
        (lambda folder: write_not_a_video(folder / "broken.mp4"), "Invalid data found when processing input"),
        (lambda folder: write_audio_only(folder / "sound.mp4"), "it holds no video frame that ffmpeg can decode"),
    ],
    ids=["corrupt", "no video stream"],
)
def test_a_video_ffmpeg_cannot_read_is_one_line_naming_it_before_anything_is_made(
    tmp_path: Path, vggt_tiny_dir: Path, capsys, make_video, reason: str
) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    video = make_video(tmp_path)
    status = exit_status_of_a_run_on(video, tmp_path / "out", vggt_tiny_dir)
    captured = capsys.readouterr()

    assert status == 1
    assert captured.err.splitlines() == [f"Error: ffmpeg could not read the video {video}: {reason}"]
    assert "Error running command" not in captured.out, "not nerfstudio's error box"
    assert sorted(path.name for path in tmp_path.iterdir()) == [video.name], "no output folder, nothing beside it"


def test_a_failed_frame_extraction_ends_with_one_error_line_after_nerfstudios_message(
    tmp_path: Path, vggt_tiny_dir: Path, capsys, monkeypatch
) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    video = tmp_path / "walk.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x32:rate=10", "-t", "0.5", str(video)],
        check=True,
    )
    run_command = process_data_utils.run_command

    def ffmpeg_fails(command: str, verbose: bool = False):
        if command.startswith("ffmpeg"):
            process_data_utils.CONSOLE.print("nerfstudio: Error running command")
            sys.exit(1)
        return run_command(command, verbose)

    monkeypatch.setattr(process_data_utils, "run_command", ffmpeg_fails)
    status = exit_status_of_a_run_on(video, tmp_path / "out", vggt_tiny_dir)

    assert status == 1
    assert capsys.readouterr().err.splitlines() == [
        f"Error: ffmpeg could not extract the frames of {video} (its message is above)."
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == [video.name], "no output folder, nothing beside it"


def test_weights_unavailable_offline_fail_with_the_hubs_message(tmp_path: Path, run_command, monkeypatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    data = write_scene(tmp_path / "photos", count=2)[0].parent
    status, output = run_command(data, tmp_path / "out", reconstruction=ReconstructionConfig(device="cpu"))
    assert_failed_cleanly(status, output, "hf download facebook/VGGT-1B", tmp_path / "out")


def test_out_of_memory_fails_with_the_flags_that_help(tmp_path: Path, run_command, monkeypatch) -> None:
    def run_out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(VGGT, "forward", run_out_of_memory)
    data = write_scene(tmp_path / "photos", count=2)[0].parent
    status, output = run_command(data, tmp_path / "out")
    assert_failed_cleanly(status, output, "--attention covisibility", tmp_path / "out")
    assert "--num-frames-target" in output and "Traceback" not in output


@pytest.mark.slow
def test_a_video_is_sampled_to_the_target_frame_count_with_nerfstudios_extractor(tmp_path: Path, run_command) -> None:
    video = tmp_path / "walk.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=96x32:rate=10", "-t", "1.2", str(video)],
        check=True,
    )
    out = tmp_path / "out"

    status, output = run_command(video, out, num_frames_target=3)

    assert status == 0, output
    frames = sorted(path.name for path in (out / "images").iterdir())
    assert 2 <= len(frames) <= 4 and frames[0] == "frame_00001.png"
    assert sorted(path.name for path in (out / "images_2").iterdir()) == frames
    assert len(parse(out).image_filenames) == len(frames)


def test_a_rerun_with_fewer_downscales_leaves_no_stale_downscaled_folders(tmp_path: Path, run_command) -> None:
    out = tmp_path / "out"
    for stale in ("images_8", "depths_8"):
        write_rgb(out / stale / "frame_00001.png")

    status, output = run_command(write_scene(tmp_path / "photos", count=2)[0].parent, out, num_downscales=1)

    assert status == 0, output
    assert sorted(path.name for path in out.iterdir() if path.is_dir()) == ["images", "images_2", "vggt"]


def test_in_place_depth_maps_follow_the_downscaled_folders_present(tmp_path: Path, run_command) -> None:
    out = tmp_path / "out"
    write_scene(out / "images", count=2, width=96, height=24)
    write_scene(out / "images_2", count=2, width=48, height=12)

    status, output = run_command(out / "images", out, skip_image_processing=True, export=ExportConfig(depth=True))

    assert status == 0, output
    assert (out / "depths_2").is_dir() and not (out / "depths_4").exists()


def test_a_video_with_an_image_folder_for_eval_is_refused_before_anything_changes(tmp_path: Path, run_command):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not decoded: the mismatch is found first")
    out = tmp_path / "out"
    out.mkdir()
    (out / "transforms.json").write_text('{"frames": []}')

    status, output = run_command(video, out, eval_data=write_scene(tmp_path / "eval", count=1)[0].parent)

    assert status == 1 and "both be image folders or both videos" in output
    assert sorted(path.name for path in out.iterdir()) == ["transforms.json"]


def test_log_lines_are_whole_lines_without_file_and_line_when_the_output_is_not_a_terminal(
    tmp_path: Path, vggt_tiny_dir: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / ("a_long_folder_name_" * 8) / "out"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ProcessVGGTSparse(
        data=write_scene(tmp_path / "photos", count=2)[0].parent,
        output_dir=out,
        num_downscales=1,
        reconstruction=ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"),
    ).main()

    lines = capsys.readouterr().out.splitlines()
    assert f"2 frames reconstructed into {out}" in lines
    assert any(line.startswith("Time: probe images ") and line.endswith(" s)") for line in lines)
    assert not [line for line in lines if ".py:" in line], "no file:line of ours or nerfstudio's"
    assert lines[-1] == (
        f"Next: vggt-sparse-ns view {out} to look at it here; training needs a CUDA GPU, which PyTorch does not see "
        f"on this machine: on one that has it, ns-train vggt-splatfacto --data {out}"
    ), "splatfacto needs CUDA: on a CPU-only machine the next step is one that runs there"


def test_the_next_step_is_training_where_cuda_is_available() -> None:
    assert (
        report.next_step(Path("out"), cuda_available=True) == "Next: [bold]ns-train vggt-splatfacto --data out[/bold]"
    )
    assert "vggt-sparse-ns view out" in report.next_step(Path("out"), cuda_available=False)
