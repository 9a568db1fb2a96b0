"""load_images reproduces the original preprocessing and knows the way back to original pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from unusual_images import (
    HUGE_SIZE,
    TRUNCATION_DIFFERS,
    rounded_8_bit,
    write_bilevel_png,
    write_png16,
)

from vggt_sparse_ns.images import ImageLoadError, load_images, open_rgb
from vggt_sparse_ns.layers.precision import unit_range


@pytest.fixture
def fixture_images(vggt_tiny_dir):
    return [vggt_tiny_dir / f"img{i}.png" for i in range(4)]


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_preprocessing_equals_the_original(fixture_images, vggt_tiny_expected, mode):
    batch = load_images(fixture_images, mode=mode)
    np.testing.assert_array_equal(unit_range(batch.tensor).numpy(), vggt_tiny_expected[f"preprocessed_{mode}"])


def _image_with_marker(size: tuple[int, int], marker_xy: tuple[int, int]) -> Image.Image:
    pixels = np.full((size[1], size[0], 3), 40, dtype=np.uint8)
    x, y = marker_xy
    pixels[y - 6 : y + 6, x - 6 : x + 6] = (255, 0, 0)
    return Image.fromarray(pixels)


def _red_centroid(chw: np.ndarray) -> np.ndarray:
    """Centre of the pure-red marker in [3, H, W] pixels of 0-255."""
    red = (chw[0] > 0.7 * 255) & (chw[1] < 0.3 * 255) & (chw[2] < 0.3 * 255)
    ys, xs = np.nonzero(red)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1000, 750), (300, 900)])
def test_model_pixels_map_back_to_original_pixels(tmp_path, mode, size):
    marker = (size[0] // 3, size[1] // 2 + 7)
    path = tmp_path / "marker.png"
    _image_with_marker(size, marker).save(path)
    batch = load_images([path], mode=mode)
    transform = batch.transforms[0]
    found = transform.model_to_original(_red_centroid(batch.tensor[0].numpy()))
    assert np.abs(found - np.array(marker)).max() < 1.0


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_centred_principal_point_maps_to_the_original_centre(tmp_path, mode):
    path = tmp_path / "portrait.png"
    Image.new("RGB", (480, 640), (10, 20, 30)).save(path)
    transform = load_images([path], mode=mode).transforms[0]
    width, height = transform.model_size
    k_model = np.array([[400.0, 0, width / 2], [0, 400.0, height / 2], [0, 0, 1]])
    k_original = transform.intrinsics_to_original(k_model)
    np.testing.assert_allclose(k_original[:2, 2], [240.0, 320.0], atol=1e-6)
    np.testing.assert_allclose(np.diag(k_original)[:2], 400.0 / np.array(transform.scale))


def test_exif_orientation_is_applied(tmp_path):
    upright = _image_with_marker((300, 200), (50, 100))
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways, 200 x 300
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": undoes the ROTATE_90 (counter-clockwise) above
    path = tmp_path / "sideways.jpg"
    rotated.save(path, exif=exif, quality=95)
    image = open_rgb(path)
    assert image.size == (300, 200)
    pixels = np.asarray(image)
    assert pixels[100, 50, 0] > 200 and pixels[100, 50, 1] < 80


def test_grayscale_palette_rgba_and_16_bit_images_load_as_rgb(tmp_path):
    paths = []
    gray = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (48, 1)))
    paths.append(tmp_path / "gray.png")
    gray.save(paths[-1])
    palette = Image.new("RGB", (64, 48), (0, 128, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    paths.append(tmp_path / "palette.png")
    palette.save(paths[-1])
    rgba = Image.new("RGBA", (64, 48), (255, 0, 0, 0))
    paths.append(tmp_path / "transparent.png")
    rgba.save(paths[-1])
    deep = Image.fromarray(np.full((48, 64), 65535 // 2, dtype=np.uint16))
    paths.append(tmp_path / "deep.png")
    deep.save(paths[-1])

    loaded = [np.asarray(open_rgb(p)) for p in paths]
    assert all(image.shape == (48, 64, 3) and image.dtype == np.uint8 for image in loaded)
    np.testing.assert_array_equal(loaded[0][:, :, 0], loaded[0][:, :, 2])  # gray stays gray
    assert tuple(loaded[1][0, 0]) == (0, 128, 255)
    assert tuple(loaded[2][0, 0]) == (255, 255, 255)  # fully transparent -> white, like the original
    assert abs(int(loaded[3][0, 0, 0]) - 128) <= 1  # half of the 16-bit range -> half of 8 bits

    batch = load_images(paths)
    assert batch.tensor.shape == (4, 3, 392, 518)


def test_mixed_sizes_are_padded_white_to_a_common_size(tmp_path):
    Image.new("RGB", (640, 480), (0, 0, 0)).save(tmp_path / "wide.png")
    Image.new("RGB", (480, 640), (0, 0, 0)).save(tmp_path / "tall.png")
    batch = load_images([tmp_path / "wide.png", tmp_path / "tall.png"], mode="crop")
    assert batch.tensor.shape == (2, 3, 518, 518)
    wide = batch.transforms[0]
    assert wide.pad == (0, 63) and wide.valid_box == (0, 63, 518, 455)
    assert int(batch.tensor[0, :, :63].min()) == 255  # white band above the wide image
    assert int(batch.tensor[0, :, 63:455].max()) == 0


def test_corrupt_file_is_named_in_the_error(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        load_images([path])


def test_no_paths_and_unknown_mode_are_rejected(tmp_path):
    with pytest.raises(ImageLoadError):
        load_images([])
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="crop"):
        load_images([tmp_path / "a.png"], mode="stretch")  # type: ignore[arg-type]


def test_a_dark_16_bit_image_stays_dark(tmp_path):
    path = tmp_path / "dark16.png"
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint16)).save(path)  # 200 / 65535: nearly black
    assert int(np.asarray(open_rgb(path)).max()) <= 1


def test_the_model_batch_is_an_8_bit_view_of_the_pixels(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.new("RGB", (48, 64), (9, 99, 199)).save(tmp_path / "tall.png")  # 518 rows: the wide one gets white bands
    batch = load_images([tmp_path / "a.png", tmp_path / "tall.png"], mode="crop")
    assert batch.pixels.dtype == np.uint8 and batch.pixels.shape == (2, 518, 518, 3)
    assert batch.tensor.dtype == torch.uint8 and batch.tensor.shape == (2, 3, 518, 518), "the model takes 8 bits"
    assert (batch.pixels[0, :63] == 255).all() and (batch.pixels[0, -63:] == 255).all(), "white padding"


@pytest.mark.filterwarnings("error")
def test_a_16000x12000_jpeg_is_decoded_at_reduced_size_into_the_pixels_of_a_whole_decode(huge_jpeg, monkeypatch):
    batch = load_images([huge_jpeg])
    transform = batch.transforms[0]
    assert transform.original_size == HUGE_SIZE and batch.pixels.shape == (1, 392, 518, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # the reference: PIL decoding every pixel
    with Image.open(huge_jpeg) as image:
        whole = np.asarray(image.resize(transform.resized_size, Image.Resampling.BICUBIC))
    difference = np.abs(whole.astype(int) - batch.pixels[0, :, :, 0].astype(int))
    assert difference.max() <= 2, "DCT scaling then a bicubic resize is the bicubic resize of every pixel"


def test_a_large_exif_rotated_jpeg_is_reduced_in_its_stored_orientation_and_shown_upright(tmp_path):
    stored = np.full((7500, 9000), 40, dtype=np.uint8)  # 67.5 megapixels: above REDUCED_DECODE_PIXELS
    stored[1000:1400, 6000:6400] = 230
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    Image.fromarray(stored).save(path, quality=90, exif=exif)

    batch = load_images([path], mode="crop")
    transform = batch.transforms[0]
    assert transform.original_size == (7500, 9000)
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image).resize(transform.resized_size, Image.Resampling.BICUBIC)
    top = transform.crop[1]
    whole = np.asarray(upright)[top : top + transform.model_size[1]]
    assert np.abs(whole.astype(int) - batch.pixels[0, :, :, 0].astype(int)).max() <= 2


@pytest.mark.filterwarnings("error")
def test_a_large_png_is_decoded_whole_and_reduced_without_pils_bomb_warning(tmp_path):
    path = write_bilevel_png(tmp_path / "large.png", 12000, 9000)  # 108 megapixels: PIL warns of a bomb
    batch = load_images([path])
    assert batch.transforms[0].original_size == (12000, 9000)
    assert batch.pixels.shape == (1, 392, 518, 3) and batch.pixels.max() == 0


def test_a_file_over_the_pixel_limit_is_refused_naming_it(tmp_path):
    path = write_bilevel_png(tmp_path / "bomb.png", 20000, 20000)  # 400 megapixels > MAX_IMAGE_PIXELS
    with pytest.raises(ImageLoadError, match=r"bomb\.png: too large: 20000x20000 pixels is more than the 268 MP"):
        load_images([path])


@pytest.mark.parametrize(
    ("size", "reason"),
    [((10, 10), "too small: 10x10 pixels"), ((2000, 20), "too narrow: 2000x20 pixels")],
)
def test_images_too_small_or_too_narrow_for_the_model_are_refused_naming_them(tmp_path, size, reason):
    Image.new("RGB", (64, 48)).save(tmp_path / "fine.png")
    Image.new("RGB", size).save(tmp_path / "odd.png")
    with pytest.raises(ImageLoadError, match=f"odd.png: {reason}"):
        load_images([tmp_path / "fine.png", tmp_path / "odd.png"])


@pytest.mark.parametrize("alpha", [(), (65535,)], ids=["RGB", "RGBA"])
def test_a_16_bit_png_reaches_the_model_rounded_to_8_bits_not_truncated(tmp_path, alpha):
    values = (*TRUNCATION_DIFFERS, *alpha)
    path = write_png16(tmp_path / "deep.png", values)
    expected = rounded_8_bit(TRUNCATION_DIFFERS)
    assert tuple(expected) != tuple(value >> 8 for value in TRUNCATION_DIFFERS), "the values tell the two apart"
    np.testing.assert_array_equal(np.asarray(open_rgb(path))[0, 0], expected)
    pixels = load_images([path]).pixels[0]
    assert (pixels == expected).all(), "a flat colour stays that colour through the resize"


def write_tiff16_big_endian(path, value: int):
    """A gray TIFF of 16 bits per sample, big-endian (PIL opens it as "I;16B"), every pixel ``value``."""
    Image.frombytes("I;16B", (64, 48), value.to_bytes(2, "big") * 64 * 48).save(path)
    return path


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (lambda path: write_png16(path, (448,)), (2, 2, 2)),  # 448 / 257 = 1.74; its high byte is 1
        (lambda path: write_png16(path, (448, 65535)), (2, 2, 2)),  # gray+alpha, opaque
        # Black at alpha 60000 / 257 = 233.46 -> 233 (high byte 234): 255 - 233 = 22 of the white shows through.
        (lambda path: write_png16(path, (0, 60000)), (22, 22, 22)),
        # A transparent colour (tRNS) is left out, as PIL, VGGT and nerfstudio leave it out of 8-bit RGB files.
        (lambda path: write_png16(path, (448, 60000, 65535), transparent=(448, 60000, 65535)), (2, 233, 255)),
        (lambda path: write_tiff16_big_endian(path.with_suffix(".tif"), 60000), (233, 233, 233)),
    ],
    ids=["gray", "gray+alpha", "gray+alpha half transparent", "RGB with a transparent colour", "gray TIFF I;16B"],
)
def test_every_kind_of_16_bit_file_reaches_the_model_rounded_to_8_bits(tmp_path, write, expected):
    path = write(tmp_path / "deep.png")
    np.testing.assert_array_equal(np.asarray(open_rgb(path))[0, 0], expected)
    assert (load_images([path]).pixels[0] == expected).all(), "a flat colour stays that colour through the resize"
