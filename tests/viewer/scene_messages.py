"""Reads what a viser server will send every browser that connects: its persistent scene and GUI messages."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import viser
from viser import _messages


def persistent_messages(server: viser.ViserServer, message_type: type) -> list:
    """The latest message of each scene node / GUI element, of one type (viser culls superseded ones)."""
    buffer = server._websock_server._broadcast_buffer
    with buffer.buffer_lock:
        messages = list(buffer.message_from_id.values())
    return [message for message in messages if isinstance(message, message_type)]


def frustums(server: viser.ViserServer) -> dict[str, _messages.CameraFrustumMessage]:
    return {message.name: message for message in persistent_messages(server, _messages.CameraFrustumMessage)}


def point_cloud(server: viser.ViserServer, name: str = "/points") -> _messages.PointCloudMessage:
    (message,) = [m for m in persistent_messages(server, _messages.PointCloudMessage) if m.name == name]
    return message


def drawn_edges(server: viser.ViserServer, prefix: str, camera_centres: np.ndarray) -> set[tuple[int, int]]:
    """Camera pairs joined by consecutive vertices of the splines under `prefix`, identified by nearest centre."""
    pairs = set()
    for spline in persistent_messages(server, _messages.CatmullRomSplineMessage):
        if not spline.name.startswith(prefix):
            continue
        positions = np.asarray(spline.positions)
        distance = np.linalg.norm(positions[:, None, :] - camera_centres[None, :, :], axis=-1)
        assert distance.min(axis=1).max() < 1e-5, "a graph vertex is not at a camera centre"
        cameras = distance.argmin(axis=1)
        pairs |= {(int(min(a, b)), int(max(a, b))) for a, b in zip(cameras[:-1], cameras[1:], strict=True)}
    return pairs


def visibility(server: viser.ViserServer, name: str) -> bool:
    (message,) = [m for m in persistent_messages(server, _messages.SetSceneNodeVisibilityMessage) if m.name == name]
    return message.visible


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0, poll_s: float = 0.05) -> bool:
    """Polls `condition` until it holds or `timeout_s` passes (viser runs GUI callbacks on worker threads)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return condition()
