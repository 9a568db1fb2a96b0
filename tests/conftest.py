"""Shared test fixtures: paths to tests/fixtures and the tiny VGGT model loaded from them."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

FIXTURES = Path(__file__).resolve().parent / "fixtures"
"""Tiny models with the VGGT and MegaLoc architectures and the original implementations' outputs (fixtures/README.md)."""

if not torch.cuda.is_available():
    # Where there is no GPU, Triton kernels are tested in Triton's CPU interpreter. Triton reads the
    # mode when its language module is imported, so it is set before any test imports Triton.
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def vggt_tiny_dir() -> Path:
    return FIXTURES / "vggt_tiny"


@pytest.fixture(scope="session")
def megaloc_tiny_dir() -> Path:
    return FIXTURES / "megaloc_tiny"


@pytest.fixture(scope="session")
def vggt_tiny_expected(vggt_tiny_dir: Path) -> dict[str, np.ndarray]:
    with np.load(vggt_tiny_dir / "expected.npz") as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def vggt_tiny_config(vggt_tiny_dir: Path) -> dict:
    return json.loads((vggt_tiny_dir / "config.json").read_text())


@pytest.fixture(scope="session")
def vggt_tiny(vggt_tiny_dir: Path):
    """The tiny fixture model, loaded strictly through the public loader, fp32, eval mode."""
    from vggt_sparse_ns.model import load_pretrained

    torch.manual_seed(0)
    return load_pretrained(vggt_tiny_dir, device="cpu")


@pytest.fixture
def triton_interpreter() -> None:
    """Tests of Triton kernels on CPU run them in Triton's interpreter (same program, numpy arithmetic);
    where a GPU is present the compiled kernels have their own tests."""
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton kernels run compiled here; the interpreter runs them where there is no GPU")


@pytest.fixture
def hopper() -> None:
    """Tests of the warp-specialised Gluon kernel run where it runs: a Hopper GPU (compute capability 9.0)."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("the Gluon kernel runs on Hopper GPUs only")


@pytest.fixture(scope="session")
def huge_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16000x12000 JPEG, made once per session (unusual_images.write_huge_jpeg)."""
    from unusual_images import write_huge_jpeg

    return write_huge_jpeg(tmp_path_factory.mktemp("huge") / "huge.jpg")


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
