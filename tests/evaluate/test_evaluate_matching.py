"""Frame matching: by file name, stem, order or a name map; what each side lacks is listed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from camera_sets import camera_set

from vggt_sparse_ns.evaluate.config import EvaluateConfig
from vggt_sparse_ns.evaluate.errors import EvaluationError
from vggt_sparse_ns.evaluate.matching import match_frames


def _named(*names: str):
    count = len(names)
    return camera_set(np.tile(np.eye(3), (count, 1, 1)), np.zeros((count, 3)), names=list(names))


def test_names_match_without_their_folders_and_missing_frames_are_listed() -> None:
    output = _named("images/frame_00001.png", "images/frame_00002.png", "images/frame_00004.png")
    reference = _named("frame_00003.png", "frame_00002.png", "frame_00001.png")
    match = match_frames(output, reference, EvaluateConfig())
    assert match.output_indices.tolist() == [0, 1] and match.reference_indices.tolist() == [2, 1]
    assert match.missing_in_output == ("frame_00003.png",)
    assert match.missing_in_reference == ("images/frame_00004.png",)


def test_windows_separators_are_folders_too() -> None:
    match = match_frames(_named("images\\a.png", "b.png"), _named("a.png", "b.png"), EvaluateConfig())
    assert match.output_indices.tolist() == [0, 1]


def test_stems_match_across_extensions_but_names_do_not() -> None:
    output, reference = _named("a.png", "b.png"), _named("b.jpg", "a.jpg")
    assert len(match_frames(output, reference, EvaluateConfig()).output_indices) == 0
    match = match_frames(output, reference, EvaluateConfig(match="stem"))
    assert match.reference_indices.tolist() == [1, 0]


def test_order_pairs_frames_sorted_by_name() -> None:
    output = _named("frame_00002.png", "frame_00001.png", "frame_00003.png")
    reference = _named("IMG_7.JPG", "IMG_5.JPG", "IMG_6.JPG")
    match = match_frames(output, reference, EvaluateConfig(match="order"))
    assert [output.names[i] for i in match.output_indices] == ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    assert [reference.names[i] for i in match.reference_indices] == ["IMG_5.JPG", "IMG_6.JPG", "IMG_7.JPG"]


def test_order_refuses_sets_of_different_sizes() -> None:
    with pytest.raises(EvaluationError, match="2 frames and the reference 1"):
        match_frames(_named("a", "b"), _named("c"), EvaluateConfig(match="order"))


def test_a_name_map_renames_output_frames_and_leaves_unnamed_ones_unmatched(tmp_path: Path) -> None:
    mapping = tmp_path / "names.json"
    mapping.write_text(json.dumps({"frame_00001.png": "IMG_5.JPG", "frame_00002.png": "IMG_9.JPG"}))
    output = _named("images/frame_00001.png", "images/frame_00002.png", "images/frame_00003.png")
    reference = _named("IMG_9.JPG", "IMG_5.JPG", "frame_00003.png")
    match = match_frames(output, reference, EvaluateConfig(name_map=mapping))
    assert match.output_indices.tolist() == [0, 1] and match.reference_indices.tolist() == [1, 0]
    assert match.missing_in_reference == ("images/frame_00003.png",)
    assert match.missing_in_output == ("frame_00003.png",)


def test_an_unreadable_name_map_is_one_clear_error(tmp_path: Path) -> None:
    mapping = tmp_path / "names.json"
    mapping.write_text('["not", "an", "object"]')
    with pytest.raises(EvaluationError, match="must be one JSON object"):
        match_frames(_named("a"), _named("a"), EvaluateConfig(name_map=mapping))


def test_two_frames_with_one_key_are_refused() -> None:
    with pytest.raises(EvaluationError, match="two frames of synthetic match as 'a'"):
        match_frames(_named("x/a.png", "y/a.jpg"), _named("a.png"), EvaluateConfig(match="stem"))
