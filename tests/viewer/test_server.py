"""The served scene: what every connecting browser receives, GUI reactions, camera selection, busy ports."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
from scene_messages import drawn_edges, frustums, persistent_messages, point_cloud, visibility, wait_until
from viser import _messages

from vggt_sparse_ns.viewer import PortInUseError, ViewerConfig, load_scene, serve_reconstruction, start_viewer
from vggt_sparse_ns.viewer.app import FRUSTUM_COLOUR, NEIGHBOUR_COLOUR, SELECTED_COLOUR


def _rgb(colour: tuple[int, int, int]) -> int:
    return colour[0] * 256**2 + colour[1] * 256 + colour[2]


@pytest.fixture
def running(synthetic_output: Path, free_port: int):
    handle = start_viewer(load_scene(synthetic_output), ViewerConfig(port=free_port))
    yield handle
    handle.stop()


def test_scene_holds_every_camera_point_and_edge(running, synthetic_output: Path):
    server, scene = running.server, running.scene
    cameras = frustums(server)
    assert sorted(cameras) == [f"/cameras/{index:05d}" for index in range(20)]
    assert all(
        message.image_binary is not None and message.color == _rgb(FRUSTUM_COLOUR) for message in cameras.values()
    )
    assert point_cloud(server).points.shape == (5_000, 3)
    saved = json.loads((synthetic_output / "vggt" / "graph.json").read_text())["edges"]
    assert drawn_edges(server, "/graph/", scene.camera_centres) == {tuple(edge) for edge in saved}
    assert len(persistent_messages(server, _messages.CatmullRomSplineMessage)) == 1  # one connected ring: one line


def test_frustum_poses_and_fov_follow_the_scene(running):
    server, scene = running.server, running.scene
    poses = {m.name: m for m in persistent_messages(server, _messages.SetPositionMessage)}
    np.testing.assert_allclose(poses["/cameras/00007"].position, scene.camera_centres[7])
    assert frustums(server)["/cameras/00007"].fov == pytest.approx(scene.vertical_fov[7])
    assert frustums(server)["/cameras/00007"].scale == pytest.approx(scene.frustum_scale)


def test_clicking_a_camera_highlights_it_and_its_neighbours_and_shows_its_image(running):
    server, viewer = running.server, running.viewer
    viewer.select(5)
    colours = {name: message.color for name, message in frustums(server).items()}
    neighbours = {3, 4, 6, 7, 15}  # ring neighbours at distance 1 and 2, and the chord 5-15 of the ring graph
    assert colours["/cameras/00005"] == _rgb(SELECTED_COLOUR)
    assert {int(name[-5:]) for name, colour in colours.items() if colour == _rgb(NEIGHBOUR_COLOUR)} == neighbours
    assert drawn_edges(server, "/selection_edges", running.scene.camera_centres) == {
        (min(5, other), max(5, other)) for other in neighbours
    }
    assert "frame_00006.png" in viewer.selection_panel.content
    assert "data:image/jpeg;base64," in viewer.selection_panel.content

    viewer.select(11)
    colours = {name: message.color for name, message in frustums(server).items()}
    assert colours["/cameras/00005"] == _rgb(FRUSTUM_COLOUR)  # the previous highlight is undone
    assert colours["/cameras/00011"] == _rgb(SELECTED_COLOUR)
    assert {int(name[-5:]) for name, colour in colours.items() if colour == _rgb(NEIGHBOUR_COLOUR)} == {9, 10, 12, 13}


def test_gui_toggles_hide_points_cameras_and_graph(running):
    viewer, server = running.viewer, running.server
    for checkbox, node in (
        (viewer.show_points, "/points"),
        (viewer.show_cameras, "/cameras"),
        (viewer.show_graph, "/graph"),
    ):
        assert visibility(server, node)
        checkbox.value = False
        assert wait_until(lambda node=node: not visibility(server, node))


def test_confidence_filter_and_point_size_resend_the_points(running):
    viewer, server, scene = running.viewer, running.server, running.scene
    viewer.confidence_percentile.value = 75.0
    assert wait_until(lambda: len(point_cloud(server).points) < len(scene.points))
    kept = point_cloud(server).points
    assert len(kept) == np.sum(scene.confidences >= np.percentile(scene.confidences, 75.0))
    assert 0.2 * len(scene.points) < len(kept) < 0.3 * len(scene.points)
    larger = 5.0 * viewer.point_size.value
    viewer.point_size.value = larger
    assert wait_until(lambda: point_cloud(server).point_size == pytest.approx(larger))
    assert len(point_cloud(server).points) == len(kept)  # the filter stays


def test_output_without_graph_or_confidences_disables_those_controls(make_output, free_port: int):
    root = make_output(cameras=4, points=200, with_graph=False, with_confidence=False, with_summary=False)
    handle = start_viewer(load_scene(root), ViewerConfig(port=free_port))
    try:
        assert handle.viewer.show_graph.disabled and not handle.viewer.show_graph.value
        assert not handle.viewer.confidence_percentile.visible
        assert persistent_messages(handle.server, _messages.CatmullRomSplineMessage) == []
        assert len(frustums(handle.server)) == 4
    finally:
        handle.stop()


def test_a_port_in_use_is_refused_before_loading(tmp_path: Path, free_port: int):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupant:
        occupant.bind(("127.0.0.1", free_port))
        occupant.listen()
        # The folder does not exist: the port error comes first, without reading anything.
        with pytest.raises(
            PortInUseError, match=f"cannot listen on 127.0.0.1:{free_port}.*pass a free port with --port"
        ):
            serve_reconstruction(tmp_path / "nowhere", ViewerConfig(port=free_port), block=False)
