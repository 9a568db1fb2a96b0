"""Serving a reconstruction: port check, viser server start, URL print, optional blocking loop."""

from __future__ import annotations

import contextlib
import io
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import viser
from rich.console import Console
from rich.panel import Panel

from vggt_sparse_ns.viewer.app import ReconstructionViewer
from vggt_sparse_ns.viewer.config import ViewerConfig
from vggt_sparse_ns.viewer.errors import PortInUseError
from vggt_sparse_ns.viewer.scene import DEFAULT_CONFIG, SceneData, load_scene

CONSOLE = Console()


def ensure_port_free(host: str, port: int) -> None:
    """Raises PortInUseError when (host, port) cannot be bound (viser itself would silently take the next port)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the server's own socket: connections of a previous viewer lingering in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortInUseError(
                f"cannot listen on {host}:{port} ({error.strerror or error}): "
                "another program (maybe another viewer) uses it; pass a free port with --port"
            ) from error


@dataclass
class ViewerHandle:
    """A running viewer: its server, the scene it shows and its URL."""

    server: viser.ViserServer
    viewer: ReconstructionViewer
    url: str

    @property
    def scene(self) -> SceneData:
        return self.viewer.scene

    def stop(self) -> None:
        self.server.stop()


def start_viewer(scene: SceneData, config: ViewerConfig) -> ViewerHandle:
    """Starts a viser server on config.host:config.port and adds the scene to it (returns at once)."""
    ensure_port_free(config.host, config.port)
    with contextlib.redirect_stdout(io.StringIO()):  # viser prints its own address table; we print ours
        server = viser.ViserServer(host=config.host, port=config.port, verbose=False)
    if server.get_port() != config.port:
        server.stop()
        raise PortInUseError(f"port {config.port} on {config.host} was taken while starting; pass another --port")
    viewer = ReconstructionViewer(server, scene)
    return ViewerHandle(server=server, viewer=viewer, url=viewer_url(config.host, config.port))


def viewer_url(host: str, port: int) -> str:
    """The address to open in a browser (localhost when listening on every interface)."""
    return f"http://{'localhost' if host in ('0.0.0.0', '::', '') else host}:{port}"


def print_url(url: str, output_dir: Path) -> None:
    CONSOLE.print(
        Panel(
            f"Viewer running locally at: [link={url}][blue]{url}[/blue][/link]\nShowing: {output_dir}",
            title="[bold][yellow]vggt-sparse-ns viewer[/yellow][/bold]",
            expand=False,
        )
    )


def serve_reconstruction(output_dir: Path, config: ViewerConfig = DEFAULT_CONFIG, block: bool = True) -> ViewerHandle:
    """Shows an `ns-process-data vggt-sparse` output folder in the browser.

    Raises ReconstructionFolderError for a folder the viewer cannot read and PortInUseError for a busy port,
    both before anything is served. With block=True it serves until Ctrl+C, then stops the server.
    """
    ensure_port_free(config.host, config.port)
    with CONSOLE.status(f"Loading {output_dir}"):
        scene = load_scene(Path(output_dir), config)
        handle = start_viewer(scene, config)
    print_url(handle.url, scene.output_dir)
    if block:
        try:
            while True:
                time.sleep(3600.0)
        except KeyboardInterrupt:
            CONSOLE.print("Viewer stopped.")
            handle.stop()
    return handle
