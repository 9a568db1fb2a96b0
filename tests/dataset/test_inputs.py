"""Choosing input images: listing, probing, and refusing folder layouts that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from unusual_images import HUGE_SIZE, write_bilevel_png, write_png16

from vggt_sparse_ns.dataset.inputs import (
    check_locations,
    list_image_files,
    probe_image,
    probe_images,
    require_frames,
    skip_warning,
    skipped_count,
)
from vggt_sparse_ns.images import ImageProblem
from vggt_sparse_ns.pipeline.errors import InputError


def test_listing_is_recursive_sorted_and_skips_hidden_and_other_files(tmp_path: Path, write_image) -> None:
    b = write_image(tmp_path / "b.png")
    a = write_image(tmp_path / "sub" / "a.jpg")
    write_image(tmp_path / ".hidden" / "c.png")
    write_image(tmp_path / ".d.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert list_image_files(tmp_path) == sorted([b, a])


def test_listing_leaves_out_excluded_folders(tmp_path: Path, write_image) -> None:
    keep = write_image(tmp_path / "x.png")
    write_image(tmp_path / "images_2" / "x.png")
    assert list_image_files(tmp_path, exclude=[tmp_path / "images_2"]) == [keep]


def test_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list_image_files(tmp_path / "missing")


def test_empty_folder_and_folder_without_images_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No images"):
        list_image_files(tmp_path)
    (tmp_path / "readme.md").write_text("# nothing")
    with pytest.raises(InputError, match="No images"):
        list_image_files(tmp_path)


def test_a_file_that_is_neither_folder_nor_video_is_refused(tmp_path: Path, write_image) -> None:
    with pytest.raises(InputError, match="neither a folder"):
        list_image_files(write_image(tmp_path / "one.png"))


def test_exif_rotation_swaps_the_probed_size_and_marks_the_file_for_rewriting(tmp_path: Path, write_image) -> None:
    probe = probe_image(write_image(tmp_path / "r.jpg", 96, 24, orientation=6))
    assert probe.size == (24, 96)
    assert probe.orientation == 6
    assert not probe.readable_by_nerfstudio


@pytest.mark.parametrize(("mode", "readable"), [("RGB", True), ("RGBA", True), ("L", True), ("I;16", False)])
def test_pixel_modes_nerfstudio_reads_wrongly_are_marked(
    tmp_path: Path, write_image, mode: str, readable: bool
) -> None:
    probe = probe_image(write_image(tmp_path / "m.png", mode=mode))
    assert probe.size == (96, 24)
    assert probe.readable_by_nerfstudio is readable


def test_formats_outside_nerfstudios_list_are_marked(tmp_path: Path, write_image) -> None:
    assert not probe_image(write_image(tmp_path / "w.webp")).readable_by_nerfstudio


def test_unreadable_files_are_returned_with_reasons_and_readable_ones_keep_their_order(
    tmp_path: Path, write_image
) -> None:
    first = write_image(tmp_path / "1.png")
    truncated = tmp_path / "2.jpg"
    data = write_image(tmp_path / "full.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "3.png"
    text.write_text("not a png")
    last = write_image(tmp_path / "4.png")
    readable, skipped = probe_images([first, truncated, text, last])
    assert [probe.path for probe in readable] == [first, last]
    assert set(skipped) == {truncated, text}
    assert all(problem.kind == "unreadable" and problem.detail for problem in skipped.values())


@pytest.mark.filterwarnings("error")
def test_very_large_images_are_probed_at_full_size_without_pils_bomb_warning_or_error(
    tmp_path: Path, huge_jpeg: Path
) -> None:
    large_png = write_bilevel_png(tmp_path / "large.png", 12000, 9000)  # PIL warns above 89 megapixels
    readable, skipped = probe_images([huge_jpeg, large_png])  # PIL refuses the JPEG (above 179 megapixels)
    assert not skipped
    assert [probe.size for probe in readable] == [HUGE_SIZE, (12000, 9000)]
    assert readable[0].readable_by_nerfstudio, "the JPEG is copied as it is"


def test_images_over_the_pixel_limit_are_skipped_with_the_limit_as_reason(tmp_path: Path, write_image) -> None:
    bomb = write_bilevel_png(tmp_path / "bomb.png", 20000, 20000)
    readable, skipped = probe_images([write_image(tmp_path / "a.png"), bomb])
    assert [probe.path.name for probe in readable] == ["a.png"]
    assert skipped == {bomb: ImageProblem("too large", "20000x20000 pixels is more than the 268 MP this tool decodes")}


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ((10, 10), ImageProblem("too small", "10x10 pixels, a side needs at least 16")),
        ((40, 15), ImageProblem("too small", "40x15 pixels, a side needs at least 16")),
        ((1600, 40), ImageProblem("too narrow", "1600x40 pixels, the longer side may be at most 37 times the shorter")),
    ],
)
def test_tiny_and_too_narrow_images_are_skipped_with_their_size_as_reason(
    tmp_path: Path, write_image, size: tuple[int, int], reason: ImageProblem
) -> None:
    tiny = write_image(tmp_path / "tiny.png", *size)
    readable, skipped = probe_images([write_image(tmp_path / "a.png"), tiny])
    assert [probe.path.name for probe in readable] == ["a.png"]
    assert skipped == {tiny: reason}


def test_the_smallest_accepted_images_are_16_pixels_and_37_to_1(tmp_path: Path, write_image) -> None:
    readable, skipped = probe_images(
        [write_image(tmp_path / "a.png", 16, 16), write_image(tmp_path / "b.png", 592, 16)]
    )
    assert not skipped and [probe.size for probe in readable] == [(16, 16), (592, 16)]


@pytest.mark.parametrize("values", [(1000, 2000, 3000), (1000, 2000, 3000, 65535)], ids=["RGB", "RGBA"])
def test_16_bit_colour_pngs_are_marked_for_rewriting_as_8_bit(tmp_path: Path, values: tuple[int, ...]) -> None:
    probe = probe_image(write_png16(tmp_path / "deep.png", values))
    assert probe.mode == ("RGB;16" if len(values) == 3 else "RGBA;16")
    assert not probe.readable_by_nerfstudio, "PIL, and so nerfstudio's loader, drops the low byte of each value"


def test_too_few_readable_images_stop_with_the_count_and_an_example(tmp_path: Path, write_image) -> None:
    readable, _ = probe_images([write_image(tmp_path / "only.png")])
    broken = {tmp_path / "broken.png": ImageProblem("unreadable", "cannot identify image file")}
    with pytest.raises(
        InputError, match=r"1 usable image.*1 unreadable, e\.g\. .*broken\.png: unreadable: .*at least 2"
    ):
        require_frames(readable, broken, 2, tmp_path)
    require_frames(readable, {}, 1, tmp_path)


def test_each_skipped_file_is_warned_about_with_what_is_true_of_it(tmp_path: Path, write_image) -> None:
    bomb = write_bilevel_png(tmp_path / "bomb.png", 20000, 20000)
    tiny = write_image(tmp_path / "tiny.png", 12, 900)
    _, skipped = probe_images([bomb, tiny])
    assert [skip_warning(path, problem) for path, problem in skipped.items()] == [
        f"skipping image {bomb}: too large: 20000x20000 pixels is more than the 268 MP this tool decodes",
        f"skipping image {tiny}: too small: 12x900 pixels, a side needs at least 16",
    ]


def test_skipped_files_are_counted_by_kind_in_a_fixed_order() -> None:
    skipped = {
        Path("a.png"): ImageProblem("too small", "12x900 pixels, a side needs at least 16"),
        Path("b.jpg"): ImageProblem("unreadable", "image file is truncated"),
        Path("c.txt.png"): ImageProblem("unreadable", "cannot identify image file"),
    }
    assert skipped_count(skipped) == "3 images skipped: 2 unreadable, 1 too small"
    assert skipped_count({Path("d.png"): skipped[Path("a.png")]}) == "1 image skipped: 1 too small"


def test_output_inside_input_is_refused_when_copying(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="inside --data"):
        check_locations(tmp_path, tmp_path / "out", in_place=False)
    with pytest.raises(InputError, match="inside --data"):
        check_locations(tmp_path, tmp_path, in_place=False)


def test_input_inside_a_rewritten_image_folder_is_refused(tmp_path: Path) -> None:
    for folder in ("images", "images_4", "images_16"):
        (tmp_path / "out" / folder).mkdir(parents=True)
        with pytest.raises(InputError, match="clears and rewrites"):
            check_locations(tmp_path / "out" / folder / "raw", tmp_path / "out", in_place=False)
    check_locations(tmp_path / "out" / "photos", tmp_path / "out", in_place=False)


def test_in_place_requires_the_images_inside_the_output_folder(tmp_path: Path) -> None:
    check_locations(tmp_path / "out" / "images", tmp_path / "out", in_place=True)
    check_locations(tmp_path / "out", tmp_path / "out", in_place=True)
    with pytest.raises(InputError, match="must be inside --output-dir"):
        check_locations(tmp_path / "photos", tmp_path / "out", in_place=True)
