"""How many processes --gpus asks for and what it refuses; only the command's own processes share frames out."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from sharded_runs import reconstruct_in_group

from vggt_sparse_ns.distributed.launch import requested_processes, spawn
from vggt_sparse_ns.pipeline.errors import InputError


def test_one_gpu_is_one_process_everywhere():
    assert requested_processes(1, "auto") == 1


def test_on_the_cpu_a_number_of_gpus_starts_that_many_cpu_processes():
    assert requested_processes(3, "cpu") == 3


def test_all_gpus_without_a_gpu_is_one_process():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    assert requested_processes("all", "auto") == 1


def test_more_gpus_than_visible_are_refused_naming_what_is_visible():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    with pytest.raises(InputError, match="--gpus 2 was asked for, but PyTorch sees 0 CUDA GPU"):
        requested_processes(2, "auto")


def test_fewer_than_one_gpu_is_refused():
    with pytest.raises(InputError, match="--gpus must be at least 1"):
        requested_processes(0, "cpu")


@pytest.mark.slow
def test_reconstruct_in_a_process_group_another_program_started_reconstructs_every_frame_in_each_process(
    vggt_tiny_dir, tmp_path
):
    """Only the command's own rank 0 shares frames out (--gpus, torchrun of ns-process-data-vggt)."""
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    for index in range(3):
        pixels = np.random.default_rng(index).integers(0, 256, (28, 42, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / f"view_{index}.png")
    assert spawn(partial(reconstruct_in_group, vggt_tiny_dir, image_dir, tmp_path), 2, timeout=120.0) == 0
    assert [torch.load(tmp_path / f"frames.rank{rank}.pt") for rank in range(2)] == [3, 3]
