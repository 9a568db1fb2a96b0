"""Running ``ns-process-data vggt-sparse`` in-process with the tiny fixture model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vggt_sparse_ns.nerfstudio.process_data import ProcessVGGTSparse
from vggt_sparse_ns.pipeline.config import ReconstructionConfig


@pytest.fixture
def run_command(vggt_tiny_dir: Path, capsys) -> Callable[..., tuple[int, str]]:
    """run_command(data, output_dir, **fields) -> (exit status, console output: stdout then stderr, whitespace
    collapsed); tiny model on CPU, one downscale."""

    def run(data: Path, output_dir: Path, **fields) -> tuple[int, str]:
        fields.setdefault("reconstruction", ReconstructionConfig(checkpoint=str(vggt_tiny_dir), device="cpu"))
        fields.setdefault("num_downscales", 1)
        try:
            ProcessVGGTSparse(data=data, output_dir=output_dir, **fields).main()
            status = 0
        except SystemExit as exit_:
            status = exit_.code
        captured = capsys.readouterr()
        return status, " ".join((captured.out + captured.err).split())

    return run
