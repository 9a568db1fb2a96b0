"""A StageTimer passed to the model reports the time of every stage that ran."""

from __future__ import annotations

import time

import torch

from vggt_sparse_ns.model.timing import StageTimer


def test_timer_reports_each_stage_of_a_forward(vggt_tiny, vggt_tiny_expected):
    timer = StageTimer("cpu")
    images = torch.from_numpy(vggt_tiny_expected["input_images"][:2])
    began = time.perf_counter()
    vggt_tiny(images, outputs=["cameras", "depth"], timer=timer)
    total = time.perf_counter() - began
    seconds = timer.seconds()
    assert list(seconds) == [
        "patch_embed", "attention_plan", "frame_blocks", "global_blocks", "head_taps", "camera_head", "depth_head"
    ]  # fmt: skip
    assert all(value >= 0 for value in seconds.values())
    assert sum(seconds.values()) <= total


def test_timer_accumulates_repeated_stages():
    timer = StageTimer("cpu")
    for _ in range(3):
        with timer("sleep"):
            time.sleep(0.01)
    assert 0.03 <= timer.seconds()["sleep"] < 0.5


def test_a_stage_inside_another_takes_its_time_out_of_the_outer_one():
    timer = StageTimer("cpu")
    with timer("outer"):
        time.sleep(0.01)
        with timer("inner"):
            time.sleep(0.2)
    seconds = timer.seconds()
    assert list(seconds) == ["outer", "inner"]
    assert 0.01 <= seconds["outer"] < 0.2 <= seconds["inner"]
