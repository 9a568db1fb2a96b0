"""--taps and --global-queries: the run keeps the heads' inputs where it is told and attends global queries as
it is told, and with auto as the memory plan says."""

from __future__ import annotations

from pathlib import Path

import pytest

from vggt_sparse_ns.model import VGGT
from vggt_sparse_ns.model.memory import MemoryEstimate
from vggt_sparse_ns.pipeline import ReconstructionConfig, reconstruct
from vggt_sparse_ns.pipeline import run as run_module

GIB = 2**30


ALL_TAPS = {"cameras", "depth.0", "depth.1", "depth.2", "depth.3"}
"""The tiny model's taps where the run asks for cameras and depth (its depth head taps four layers, as VGGT-1B's)."""


@pytest.fixture
def memory_arguments(monkeypatch) -> list[tuple[set[str], bool]]:
    """The (taps kept on the host, query_chunks) arguments of every model call."""
    seen: list[tuple[set[str], bool]] = []
    forward = VGGT.forward

    def spy(self, *args, taps_on_host=False, query_chunks: bool = False, **kwargs):
        seen.append((set(taps_on_host), query_chunks))
        return forward(self, *args, taps_on_host=taps_on_host, query_chunks=query_chunks, **kwargs)

    monkeypatch.setattr(VGGT, "forward", spy)
    return seen


@pytest.mark.parametrize(("choice", "expected"), [("host", ALL_TAPS), ("device", set()), ("auto", set())])
def test_the_chosen_placement_reaches_the_model(
    tmp_path, write_image, vggt_tiny_dir, memory_arguments, choice, expected
):
    scene = [write_image(tmp_path / f"{index}.png", 96, 24) for index in range(3)]
    reconstruct(scene, ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu", taps=choice))
    assert [on_host for on_host, _ in memory_arguments] == [expected]


def test_auto_keeps_the_taps_on_the_host_when_the_gpu_is_too_small(
    tmp_path, write_image, vggt_tiny_dir: Path, memory_arguments, monkeypatch
):
    monkeypatch.setattr(run_module, "free_device_bytes", lambda device: 1)  # a GPU with one free byte
    scene = [write_image(tmp_path / f"{index}.png", 96, 24) for index in range(3)]
    reconstruct(scene, ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"))
    assert [on_host for on_host, _ in memory_arguments] == [ALL_TAPS]


def test_a_placement_that_is_not_a_choice_is_refused():
    with pytest.raises(ValueError, match="auto, device or host"):
        ReconstructionConfig(taps="disk")  # type: ignore[arg-type]


@pytest.mark.parametrize(("choice", "expected"), [("chunks", True), ("all", False), ("auto", False)])
def test_the_chosen_global_queries_reach_the_model(
    tmp_path, write_image, vggt_tiny_dir, memory_arguments, choice, expected
):
    scene = [write_image(tmp_path / f"{index}.png", 96, 24) for index in range(3)]
    reconstruct(scene, ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu", global_queries=choice))
    assert [chunks for _, chunks in memory_arguments] == [expected]


def test_auto_keeps_some_taps_on_the_host_then_attends_by_query_chunks_as_the_free_memory_shrinks(
    tmp_path, write_image, vggt_tiny_dir: Path, memory_arguments, monkeypatch
):
    scene = [write_image(tmp_path / f"{index}.png", 96, 24) for index in range(3)]
    config = ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu")
    taps = {"cameras": 1 * GIB, "depth.3": 4 * GIB}

    def estimate(*args, query_chunks: bool = False, **kwargs) -> MemoryEstimate:
        return MemoryEstimate(0, (6 if query_chunks else 12) * GIB, 2 * GIB, taps, frozenset(taps))

    monkeypatch.setattr(run_module, "estimate_peak_bytes", estimate)
    for free_gib in (20, 15, 14, 12):  # all fit; one tap moves; both move; only by query chunks
        monkeypatch.setattr(run_module, "free_device_bytes", lambda device, free=free_gib * GIB: free)
        reconstruct(scene, config)
    assert memory_arguments == [(set(), False), ({"depth.3"}, False), (set(taps), False), ({"cameras"}, True)]


def test_global_queries_that_are_not_a_choice_are_refused():
    with pytest.raises(ValueError, match="auto, all or chunks"):
        ReconstructionConfig(global_queries="some")  # type: ignore[arg-type]
