"""--taps: the run keeps the heads' inputs where it is told, and with auto where the memory plan says."""

from __future__ import annotations

from pathlib import Path

import pytest

from vggt_sparse_ns.model import VGGT
from vggt_sparse_ns.pipeline import ReconstructionConfig, reconstruct
from vggt_sparse_ns.pipeline import run as run_module


@pytest.fixture
def placements(monkeypatch) -> list[bool]:
    """The taps_on_host argument of every model call."""
    seen: list[bool] = []
    forward = VGGT.forward

    def spy(self, *args, taps_on_host: bool = False, **kwargs):
        seen.append(taps_on_host)
        return forward(self, *args, taps_on_host=taps_on_host, **kwargs)

    monkeypatch.setattr(VGGT, "forward", spy)
    return seen


@pytest.mark.parametrize(("choice", "expected"), [("host", True), ("device", False), ("auto", False)])
def test_the_chosen_placement_reaches_the_model(tmp_path, write_image, vggt_tiny_dir, placements, choice, expected):
    scene = [write_image(tmp_path / f"{index}.png", 96, 24) for index in range(3)]
    reconstruct(scene, ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu", taps=choice))
    assert placements == [expected]


def test_auto_keeps_the_taps_on_the_host_when_the_gpu_is_too_small(
    tmp_path, write_image, vggt_tiny_dir: Path, placements, monkeypatch
):
    monkeypatch.setattr(run_module, "free_device_bytes", lambda device: 1)  # a GPU with one free byte
    scene = [write_image(tmp_path / f"{index}.png", 96, 24) for index in range(3)]
    reconstruct(scene, ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"))
    assert placements == [True]


def test_a_placement_that_is_not_a_choice_is_refused():
    with pytest.raises(ValueError, match="auto, device or host"):
        ReconstructionConfig(taps="disk")  # type: ignore[arg-type]
