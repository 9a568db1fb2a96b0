"""The viewer in a real browser: Debian's headless Chromium renders the scene, and a click selects a camera."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scene_messages import drawn_edges, frustums, point_cloud, wait_until
from viewer_browser import CHROMIUM, VIEWPORT, chromium_page, scene_region, screenshot

from vggt_sparse_ns.viewer import ViewerConfig, load_scene, start_viewer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]


def _pixel_counts(image: np.ndarray) -> dict[str, int]:
    """How many pixels look like the synthetic scene's parts (colours as rendered, after three.js colour handling)."""
    red, green, blue = (image[..., channel].astype(int) for channel in range(3))
    grey = (np.abs(red - green) < 6) & (np.abs(green - blue) < 6)
    return {
        "distinct colours": len(np.unique((red << 16) | (green << 8) | blue)),
        "orange sphere": int(np.sum((red > 100) & (red > 1.8 * green) & (red > 2.5 * blue))),
        "blue sphere": int(np.sum((blue > 150) & (blue > 2.5 * red))),
        "dark frustum lines": int(np.sum(grey & (red < 90))),
        "selected red": int(np.sum((red > 200) & (green < 60) & (blue < 60))),
    }


def _scene_is_drawn(page) -> bool:
    # Modest thresholds: viser lowers the pixel ratio when software rendering is slow, which blurs thin lines.
    counts = _pixel_counts(scene_region(screenshot(page)))
    return (
        counts["distinct colours"] > 500
        and counts["orange sphere"] > 200
        and counts["blue sphere"] > 200
        and counts["dark frustum lines"] > 200
    )


def test_browser_renders_the_scene_and_a_click_selects_a_camera(synthetic_output: Path, free_port: int, tmp_path):
    handle = start_viewer(load_scene(synthetic_output), ViewerConfig(port=free_port))
    try:
        with chromium_page(handle.url) as page:
            assert wait_until(lambda: _scene_is_drawn(page), timeout_s=40.0, poll_s=1.0), _pixel_counts(
                scene_region(screenshot(page))
            )
            Image.fromarray(screenshot(page)).save(tmp_path / "viewer.png")

            server, scene = handle.server, handle.scene
            assert len(frustums(server)) == 20
            assert point_cloud(server).points.shape == (5_000, 3)
            saved = json.loads((synthetic_output / "vggt" / "graph.json").read_text())["edges"]
            assert drawn_edges(server, "/graph/", scene.camera_centres) == {tuple(edge) for edge in saved}

            # Put the browser's camera just behind camera 7: its textured frustum fills the middle of the view.
            (client,) = server.get_clients().values()
            T_world_camera, forward = scene.T_world_camera[7], scene.T_world_camera[7, :3, 2]
            with client.atomic():
                client.camera.up_direction = -T_world_camera[:3, 1]
                client.camera.position = T_world_camera[:3, 3] - 0.5 * scene.frustum_scale * forward
                client.camera.look_at = T_world_camera[:3, 3] + forward

            def click_centre_selects_camera_7() -> bool:
                page.mouse.click(VIEWPORT["width"] // 2, VIEWPORT["height"] // 2)
                return handle.viewer.selected == 7

            assert wait_until(click_centre_selects_camera_7, timeout_s=20.0, poll_s=1.0)
            assert "frame_00008.png" in handle.viewer.selection_panel.content
            assert wait_until(lambda: _pixel_counts(scene_region(screenshot(page)))["selected red"] > 500, 20.0, 1.0)
    finally:
        handle.stop()
