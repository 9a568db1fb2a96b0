"""Viewer settings (tyro-friendly: each field's docstring is its command-line help)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViewerConfig:
    """How to serve a reconstruction in the browser."""

    host: str = "127.0.0.1"
    """Address the viewer listens on (0.0.0.0 to reach it from other machines)."""
    port: int = 7007
    """Port of the viewer's web page and websocket."""
    max_points: int = 1_000_000
    """Show at most this many points (a fixed-seed random subset of the point cloud)."""
    thumbnail_size: int = 128
    """Longest side, in pixels, of the image shown on each camera frustum."""
    frustum_size: float = 0.3
    """Frustum size as a fraction of the median distance from a camera to its nearest neighbour (at least 1.5% of the
    scene's extent, so that frustums along dense video paths stay visible)."""
