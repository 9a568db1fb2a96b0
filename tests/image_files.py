"""Small image files of the kinds users have: plain, EXIF-rotated, 16-bit, grayscale, RGBA, broken."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def noise(width: int, height: int, seed: int, channels: int = 3) -> np.ndarray:
    """Random texture (the tiny test model has random weights: any pixels do)."""
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def write_rgb(path: Path, width: int = 96, height: int = 24, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise(width, height, seed)).save(path)
    return path


def write_scene(folder: Path, count: int = 3, width: int = 96, height: int = 24, suffix: str = ".png") -> list[Path]:
    """``count`` plain RGB images of one size: the common case (nerfstudio's fast copy path)."""
    return [write_rgb(folder / f"view_{index:02d}{suffix}", width, height, seed=index) for index in range(count)]


def write_exif_rotated_jpeg(path: Path, width: int = 96, height: int = 24, orientation: int = 6) -> Path:
    """Stored ``width`` x ``height``; orientation 6 means viewers show it rotated by 90 degrees (portrait)."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(noise(width, height, seed=11)).save(path, quality=95, exif=exif)
    return path


def write_16bit_png(path: Path, width: int = 80, height: int = 20) -> Path:
    values = np.random.default_rng(12).integers(0, 65536, (height, width), dtype=np.uint16)
    Image.fromarray(values).save(path)
    return path


def write_gray_png(path: Path, width: int = 96, height: int = 24) -> Path:
    Image.fromarray(noise(width, height, seed=13, channels=1), mode="L").save(path)
    return path


def write_rgba_png(path: Path, width: int = 96, height: int = 32) -> Path:
    Image.fromarray(noise(width, height, seed=14, channels=4), mode="RGBA").save(path)
    return path


def write_truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half, as an interrupted copy leaves it."""
    write_rgb(path.with_suffix(".tmp.jpg"), 96, 24, seed=15)
    data = path.with_suffix(".tmp.jpg").read_bytes()
    path.with_suffix(".tmp.jpg").unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_not_an_image(path: Path) -> Path:
    path.write_text("this is not an image")
    return path


def write_not_a_video(path: Path) -> Path:
    """An MP4 header followed by bytes that are no video (what a broken download leaves)."""
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 16)
    return path
