"""The one stage timer: every stage of a forward pass, repeated and nested stages, work timed beside a stage, on_start."""

from __future__ import annotations

import time

import torch

from vggt_sparse_ns.timing import StageTimer


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
        with timer.stage("sleep"):
            time.sleep(0.01)
    assert 0.03 <= timer.seconds()["sleep"] < 0.5


def test_a_stage_inside_another_takes_its_time_out_of_the_outer_one():
    timer = StageTimer("cpu")
    with timer.stage("outer"):
        time.sleep(0.01)
        with timer.stage("inner"):
            time.sleep(0.2)
    seconds = timer.seconds()
    assert list(seconds) == ["outer", "inner"]
    assert 0.01 <= seconds["outer"] < 0.2 <= seconds["inner"]


def test_work_beside_a_stage_is_timed_apart_and_each_stage_announces_itself():
    started = []
    timer = StageTimer(on_start=started.append)
    with timer.stage("inference"), timer.beside("write images", running="inference"):
        time.sleep(0.02)
    assert started == ["inference"]
    assert list(timer.seconds()) == ["inference"]
    running, seconds = timer.seconds_beside()["write images"]
    assert running == "inference" and 0.02 <= seconds < 0.5
    assert timer.total_seconds == timer.seconds()["inference"]


def test_peak_memory_keeps_the_largest_measurement_and_none_means_not_measured():
    timer = StageTimer()
    timer.record_peak_memory(None)
    assert timer.peak_memory_bytes is None
    timer.record_peak_memory(5)
    timer.record_peak_memory(3)
    assert timer.peak_memory_bytes == 5
