"""How many processes --gpus asks for, and what it refuses."""

from __future__ import annotations

import pytest
import torch

from vggt_sparse_ns.distributed.launch import requested_processes
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
