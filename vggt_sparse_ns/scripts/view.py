"""`vggt-sparse-ns view OUTPUT_DIR`: the reconstruction in the browser."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from vggt_sparse_ns.cli_errors import reported
from vggt_sparse_ns.viewer.config import ViewerConfig


@dataclass(frozen=True)
class View:
    """Show an `ns-process-data vggt-sparse` output (cameras, points, covisibility graph, run summary) in the browser."""

    output_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUTPUT_DIR")]
    """Output folder of `ns-process-data vggt-sparse` (the one holding transforms.json)."""
    viewer: Annotated[ViewerConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=ViewerConfig)

    def main(self) -> None:
        """Serve until Ctrl+C; a folder that cannot be shown ends with one message and exit status 1."""
        from vggt_sparse_ns.viewer.server import serve_reconstruction

        with reported():
            serve_reconstruction(self.output_dir, self.viewer, block=True)
