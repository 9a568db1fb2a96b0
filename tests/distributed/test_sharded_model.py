"""Frames shared out between 2 and 3 gloo processes (uneven shards, a head count 3 does not divide) give the
predictions of one process, for dense and covisibility attention and for scenes batched together; a process that
fails stops them all."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from sharded_runs import predict_in_group, strategies, two_scenes

from vggt_sparse_ns.distributed.launch import spawn
from vggt_sparse_ns.model import load_pretrained

SCENE_SIZE = (112, 154)
"""8 x 11 patches per frame: a forward of the tiny model takes well under a second."""
EXACT = 1e-5
"""Allowed max abs difference, as a fraction of each array's largest magnitude."""
SPAWN_TIMEOUT = 180.0
PREDICTION_KEYS = ("pose_enc", "extrinsic", "intrinsic", "depth", "depth_conf", "world_points", "world_points_conf")


@pytest.fixture(scope="module")
def seven_frame_scene(vggt_tiny_expected, tmp_path_factory) -> Path:
    """[7, 3, H, W] saved for the processes: the fixture's four images, then mirrored copies of the first three."""
    images = torch.from_numpy(vggt_tiny_expected["input_images"])
    images = F.interpolate(images, size=SCENE_SIZE, mode="bilinear", antialias=True, align_corners=False)
    scene = torch.cat((images, images[:3].flip(-1))).clamp(0.0, 1.0)
    path = tmp_path_factory.mktemp("scene") / "scene.pt"
    torch.save(scene, path)
    return path


def assert_shares_give_one_process_predictions(model, scene_file: Path, results: Path, processes: int) -> None:
    """Each process's saved predictions, joined in rank order, equal the model's on the whole scene."""
    device = next(model.parameters()).device
    scene = torch.load(scene_file).to(device)
    runs = [(name, scene, strategy) for name, strategy in strategies().items()]
    runs.append(("batched", two_scenes(scene), strategies()["covisibility"]))
    runs.append(("taps_on_host", scene, strategies()["covisibility"]))  # each process's taps: its own frames
    for name, images, strategy in runs:
        reference = dict(model(images, strategy, compute_dtype=torch.float32))
        reference.update({key: reference[key].cpu() for key in PREDICTION_KEYS})
        parts = [torch.load(results / f"{name}.rank{rank}.pt") for rank in range(processes)]
        assert [part["depth"].shape[1] for part in parts] == [len(r) for r in torch.arange(7).tensor_split(processes)]
        for key in PREDICTION_KEYS:
            joined = torch.cat([part[key] for part in parts], dim=1)
            difference = (joined - reference[key]).abs().max() / reference[key].abs().max()
            assert difference <= EXACT, f"{name} {key}: {difference:.2e}"
        if name == "covisibility":
            graph = reference["attention"]["graphs"][0]
            assert graph["dense_cost_fraction"] < 1  # really sparse: not every frame attends to every frame
            assert all(part["attention"]["graphs"] == reference["attention"]["graphs"] for part in parts)


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 3])
def test_frames_shared_out_between_processes_give_the_predictions_of_one_process(
    processes, vggt_tiny, vggt_tiny_dir, seven_frame_scene, tmp_path
):
    assert vggt_tiny.config.num_heads % 3 != 0  # three processes attend with unequal numbers of heads
    status = spawn(partial(predict_in_group, vggt_tiny_dir, seven_frame_scene, tmp_path), processes, SPAWN_TIMEOUT)
    assert status == 0
    assert_shares_give_one_process_predictions(vggt_tiny, seven_frame_scene, tmp_path, processes)


@pytest.mark.slow
def test_frames_shared_out_between_two_gpus_give_the_predictions_of_one_gpu(
    vggt_tiny_dir, seven_frame_scene, tmp_path, monkeypatch
):
    """NCCL between two GPUs, in fp32 (written without a multi-GPU machine at hand: not run yet)."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    target = partial(predict_in_group, vggt_tiny_dir, seven_frame_scene, tmp_path, device="cuda")
    assert spawn(target, 2, SPAWN_TIMEOUT) == 0
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = load_pretrained(vggt_tiny_dir, device="cuda")
    assert_shares_give_one_process_predictions(model, seven_frame_scene, tmp_path, 2)


def _run_with_a_failing_process(checkpoint_dir: Path, scene: Path, results: Path, capfd) -> tuple[int, float, str]:
    """Three processes of which rank 1 fails: (status, seconds, everything they printed)."""
    started = time.monotonic()
    status = spawn(partial(predict_in_group, checkpoint_dir, scene, results, fail_rank=1), 3, SPAWN_TIMEOUT)
    elapsed = time.monotonic() - started
    output = capfd.readouterr()
    return status, elapsed, output.out + output.err


@pytest.mark.slow
def test_a_process_that_fails_stops_all_of_them_with_its_message_and_no_output(
    vggt_tiny_dir, seven_frame_scene, tmp_path, capfd
):
    status, elapsed, printed = _run_with_a_failing_process(vggt_tiny_dir, seven_frame_scene, tmp_path, capfd)
    assert status == 1
    assert elapsed < SPAWN_TIMEOUT / 2  # stopped, not waiting on a collective until the timeout
    assert printed.count("injected failure on rank 1") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_other_processes_add_no_message_of_their_own(vggt_tiny_dir, seven_frame_scene, tmp_path, capfd):
    """Neither a failed collective (PeerFailure) nor the launcher's SIGTERM (Interrupted) adds a line: what is
    printed is the failing process's traceback alone."""
    _, _, printed = _run_with_a_failing_process(vggt_tiny_dir, seven_frame_scene, tmp_path, capfd)
    assert "communication between the processes failed" not in printed
    assert "Interrupted" not in printed
    assert printed.count("Traceback") == 1 and printed.rstrip().endswith("RuntimeError: injected failure on rank 1")
