"""Tiny image files for the pipeline tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """write_image(path, width, height, mode="RGB", orientation=None): random pixels, optional EXIF orientation."""

    def write(path: Path, width: int = 96, height: int = 24, mode: str = "RGB", orientation: int | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
        if mode == "I;16":
            image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
        else:
            channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
            shape = (height, width, channels) if channels > 1 else (height, width)
            image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode)
        exif = Image.Exif()
        if orientation is not None:
            exif[0x0112] = orientation
        image.save(path, exif=exif)
        return path

    return write
