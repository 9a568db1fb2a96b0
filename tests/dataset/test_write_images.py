"""write_images: images/ holds the inputs byte for byte (or upright 8-bit PNGs), images_N every image at
(w // N, h // N) in its own format, whatever the number of writers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from image_files import write_exif_rotated_jpeg, write_rgba_png
from PIL import Image, ImageOps
from unusual_images import HUGE_SIZE, SQUARE_CENTRE, TRUNCATION_DIFFERS, rounded_8_bit, write_png16

from vggt_sparse_ns.dataset.images import ImageGroup, write_images
from vggt_sparse_ns.dataset.inputs import probe_images
from vggt_sparse_ns.images import load_images


def _smooth_rgb(width: int, height: int, seed: int) -> Image.Image:
    """Smooth colours (JPEG keeps them close), so downscaled JPEGs can be compared with the source."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    return coarse.resize((width, height), Image.Resampling.BICUBIC)


def _group(folder: Path) -> ImageGroup:
    probes, skipped = probe_images(sorted(folder.iterdir()))
    assert not skipped
    return ImageGroup(probes, "frame_")


def _files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Two JPEGs (one of odd size), a PNG and an RGBA PNG."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    _smooth_rgb(96, 64, seed=0).save(folder / "a.jpg", quality=90)
    _smooth_rgb(97, 63, seed=1).save(folder / "b.jpg", quality=90)
    _smooth_rgb(80, 40, seed=2).save(folder / "c.png")
    write_rgba_png(folder / "d.png", 44, 36)
    return folder


def test_full_resolution_images_are_the_input_files_byte_for_byte(tmp_path: Path, inputs: Path) -> None:
    out = tmp_path / "out" / "images"
    written = write_images([_group(inputs)], out.parent, num_downscales=2)

    assert [path.name for path in written[0]] == [
        "frame_00001.jpg",
        "frame_00002.jpg",
        "frame_00003.png",
        "frame_00004.png",
    ]
    for source, target in zip(sorted(inputs.iterdir()), written[0], strict=True):
        assert target.read_bytes() == source.read_bytes()


def test_downscaled_folders_hold_every_image_at_the_floor_of_its_size_over_n(tmp_path: Path, inputs: Path) -> None:
    out = tmp_path / "out" / "images"
    write_images([_group(inputs)], out.parent, num_downscales=3)

    sizes = {
        "frame_00001.jpg": (96, 64),
        "frame_00002.jpg": (97, 63),
        "frame_00003.png": (80, 40),
        "frame_00004.png": (44, 36),
    }
    for factor in (2, 4, 8):
        folder = out.parent / f"images_{factor}"
        assert sorted(path.name for path in folder.iterdir()) == sorted(sizes)
        for name, (width, height) in sizes.items():
            with Image.open(folder / name) as image, Image.open(out / name) as full:
                assert image.size == (width // factor, height // factor)
                assert (image.format, image.mode) == (full.format, full.mode), "format and mode (alpha too) kept"
    with Image.open(out.parent / "images_2" / "frame_00001.jpg") as half, Image.open(out / "frame_00001.jpg") as full:
        expected = np.asarray(full.convert("RGB").resize(half.size, Image.Resampling.BOX), np.float32)
        assert np.abs(np.asarray(half.convert("RGB"), np.float32) - expected).mean() < 3.0, "the same picture"
    assert not list(out.parent.rglob("*.tmp")), "no temporary file is left behind"


def test_parallel_writers_produce_the_same_files_as_one(tmp_path: Path, inputs: Path) -> None:
    serial, parallel = tmp_path / "serial" / "images", tmp_path / "parallel" / "images"
    write_images([_group(inputs)], serial.parent, num_downscales=2, workers=1)
    write_images([_group(inputs)], parallel.parent, num_downscales=2, workers=4)
    assert _files(serial.parent) == _files(parallel.parent)


def test_an_exif_rotated_jpeg_becomes_an_upright_png_at_every_scale(tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    rotated = write_exif_rotated_jpeg(folder / "r.jpg", 24, 96, orientation=6)
    out = tmp_path / "out" / "images"

    written = write_images([_group(folder)], out.parent, num_downscales=1)

    assert written == [[out / "frame_00001.png"]]
    with Image.open(rotated) as original, Image.open(written[0][0]) as image:
        np.testing.assert_array_equal(np.asarray(image), np.asarray(ImageOps.exif_transpose(original).convert("RGB")))
    with Image.open(out.parent / "images_2" / "frame_00001.png") as half:
        assert half.size == (48, 12) and half.mode == "RGB"


@pytest.mark.filterwarnings("error")
def test_a_16000x12000_jpeg_is_copied_and_downscaled_without_pils_bomb_check(tmp_path: Path, huge_jpeg: Path) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "huge.jpg").symlink_to(huge_jpeg)
    out = tmp_path / "out" / "images"

    written = write_images([_group(folder)], out.parent, num_downscales=3)

    assert written[0][0].read_bytes() == huge_jpeg.read_bytes()
    for factor in (2, 4, 8):
        with Image.open(out.parent / f"images_{factor}" / "frame_00001.jpg") as image:
            assert image.size == (HUGE_SIZE[0] // factor, HUGE_SIZE[1] // factor)
            x, y = SQUARE_CENTRE[0] // factor, SQUARE_CENTRE[1] // factor
            assert image.getpixel((x, y)) > 200 and image.getpixel((x, y + 120 // factor)) < 100, "the square is there"


@pytest.mark.parametrize("alpha", [(), (65535,)], ids=["RGB", "RGBA"])
def test_a_16_bit_png_is_written_as_the_8_bit_png_vggt_saw(tmp_path: Path, alpha: tuple[int, ...]) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    source = write_png16(folder / "deep.png", (*TRUNCATION_DIFFERS, *alpha))
    out = tmp_path / "out" / "images"

    written = write_images([_group(folder)], out.parent, num_downscales=1)

    with Image.open(written[0][0]) as image:
        assert image.mode == "RGB", "8 bits per channel, alpha composited on white"
        pixels = np.asarray(image)
    assert (pixels == rounded_8_bit(TRUNCATION_DIFFERS)).all()
    np.testing.assert_array_equal(load_images([written[0][0]]).pixels, load_images([source]).pixels)
    with Image.open(out.parent / "images_2" / "frame_00001.png") as half:
        assert half.size == (32, 24) and half.mode == "RGB"


def test_once_stop_is_set_no_further_file_is_begun(inputs: Path, tmp_path: Path):
    stop = threading.Event()
    stop.set()
    write_images([_group(inputs)], tmp_path / "out", num_downscales=1, workers=1, stop=stop)
    assert _files(tmp_path / "out") == {}
