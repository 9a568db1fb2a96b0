"""Makes docs/images/viewer.png: a generated output in the viewer, one camera selected, shot by headless Chromium.

python tests/viewer/make_screenshot.py docs/images/viewer.png
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from synthetic_reconstruction import SyntheticSpec, write_synthetic_output
from viewer_browser import chromium_page, scene_region, screenshot

from vggt_sparse_ns.viewer import ViewerConfig, load_scene, start_viewer

SPEC = SyntheticSpec(cameras=36, points=60_000, width=640, height=480, render_points=60_000)
SELECTED_CAMERA = 0  # nearest to the initial view, with a graph edge across the circle


def _drawn(image: np.ndarray) -> bool:
    red, green, blue = (image[..., channel].astype(int) for channel in range(3))
    return int(np.sum((red > 100) & (red > 1.8 * green) & (red > 2.5 * blue))) > 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("destination", type=Path)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        output = write_synthetic_output(Path(folder) / "output", SPEC)
        handle = start_viewer(load_scene(output, ViewerConfig(port=port)), ViewerConfig(port=port))
        try:
            handle.viewer.select(SELECTED_CAMERA)
            with chromium_page(handle.url) as page:
                deadline = time.monotonic() + 60
                while not _drawn(scene_region(screenshot(page))) and time.monotonic() < deadline:
                    time.sleep(0.5)
                time.sleep(1.0)  # let the last textures arrive
                Image.fromarray(screenshot(page)).save(args.destination, optimize=True)
        finally:
            handle.stop()
    print(args.destination)


if __name__ == "__main__":
    main()
