"""Drives Debian's headless Chromium (no browser download) at a running viewer, for tests and the docs screenshot."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
# Closed network, running as root, no GPU: WebGL comes from SwiftShader (software), asked for explicitly.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
SCENE_WIDTH_FRACTION = 0.7
"""The left part of the page that the GUI panel never covers."""


@contextmanager
def chromium_page(url: str) -> Iterator:
    """A Playwright page of a fresh headless Chromium profile, opened at `url` once the 3D canvas exists."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS, viewport=VIEWPORT
        )
        try:
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("canvas", state="visible", timeout=30_000)
            yield page
        finally:
            context.close()


def screenshot(page) -> np.ndarray:
    """The whole page as an (H, W, 3) uint8 array."""
    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))


def scene_region(image: np.ndarray) -> np.ndarray:
    return image[:, : int(image.shape[1] * SCENE_WIDTH_FRACTION)]
