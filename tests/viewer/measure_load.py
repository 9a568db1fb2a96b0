"""Measures how long the viewer takes to read an output folder and add it to a viser server (no browser).

    python tests/viewer/measure_load.py OUTPUT_DIR [--max-points N]

Prints seconds for load_scene (transforms, PLY, thumbnails, graph, summary) and for start_viewer
(server start + every scene node and GUI element queued), as used for the figures in docs/viewer.md.
"""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path

from vggt_sparse_ns.viewer import ViewerConfig, load_scene, start_viewer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--max-points", type=int, default=ViewerConfig.max_points)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = ViewerConfig(port=port, max_points=args.max_points)

    start = time.perf_counter()
    scene = load_scene(args.output, config)
    loaded = time.perf_counter()
    handle = start_viewer(scene, config)
    served = time.perf_counter()
    handle.stop()
    edges = 0 if scene.edges is None else len(scene.edges)
    print(f"{len(scene.T_world_camera)} cameras, {len(scene.points):,} of {scene.total_points:,} points, {edges} edges")
    print(f"load_scene: {loaded - start:.2f} s, start_viewer: {served - loaded:.2f} s, total: {served - start:.2f} s")


if __name__ == "__main__":
    main()
