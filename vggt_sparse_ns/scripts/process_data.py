"""``ns-process-data-vggt``: ``ns-process-data vggt-sparse`` as a console script of our own, for environments
where the import hook (a .pth file) is not processed."""

from __future__ import annotations

import tyro

from vggt_sparse_ns.nerfstudio.process_data import ProcessVGGTSparse


def entrypoint() -> None:
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(ProcessVGGTSparse, description=ProcessVGGTSparse.__doc__).main()


if __name__ == "__main__":
    entrypoint()
