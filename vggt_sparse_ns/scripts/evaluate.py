"""`vggt-sparse-ns evaluate OUT... --reference REF`: camera accuracy against a reference reconstruction."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from vggt_sparse_ns.cli_errors import fail, reported
from vggt_sparse_ns.evaluate.config import EvaluateConfig


@dataclass(frozen=True)
class Evaluate:
    """Compare the cameras of one or more outputs (e.g. dense, covisibility k=16, --refine) with a reference
    reconstruction such as your own COLMAP run; prints one table with a column per output (docs/evaluate.md)."""

    outputs: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Output folders of `ns-process-data vggt-sparse` (or their transforms.json, or their colmap/sparse/0)."""
    reference: Path
    """The reference: a COLMAP model folder (binary or text; or a folder holding sparse/0 or colmap/sparse/0), or a
    transforms.json or its folder (e.g. from `ns-process-data images` on the same images)."""
    json: bool = False
    """Print the figures as JSON on stdout instead of the table."""
    json_file: Path | None = None
    """Also write the figures as JSON to this file."""
    evaluation: Annotated[EvaluateConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=EvaluateConfig)

    def main(self) -> None:
        from rich.console import Console

        from vggt_sparse_ns.evaluate.cameras import load_cameras
        from vggt_sparse_ns.evaluate.errors import EvaluationError
        from vggt_sparse_ns.evaluate.report import compare_cameras
        from vggt_sparse_ns.evaluate.table import report_table
        from vggt_sparse_ns.export.atomic import write_json_atomic

        if not self.outputs:
            fail("name at least one output folder to evaluate")
        with reported():
            reference = load_cameras(self.reference)
            reports = [compare_cameras(load_cameras(output), reference, self.evaluation) for output in self.outputs]
            document = {"reference": reference.source, "runs": [report.to_dict() for report in reports]}
            if self.json_file is not None:
                try:
                    write_json_atomic(self.json_file, document)
                except OSError as error:
                    raise EvaluationError(f"cannot write {self.json_file}: {error.strerror or error}") from None
        if self.json:
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
        else:
            console = Console(soft_wrap=True)
            table = report_table(reports, _column_names(self.outputs))
            if not console.is_terminal:  # a file or a pipe: the whole table, never wrapped at 80 columns
                console.width = max(
                    console.width, console.measure(table, options=console.options.update(max_width=10_000)).maximum
                )
            console.print(table)


def _column_names(outputs: tuple[Path, ...]) -> list[str]:
    """The output folders' names, or the paths as given where two names would be the same."""
    names = [_column_name(path) for path in outputs]
    return names if len(set(names)) == len(names) else [str(path) for path in outputs]


def _column_name(path: Path) -> str:
    """The output folder's name (the folder above a transforms.json or a colmap/sparse/0)."""
    path = path.resolve()
    if path.name == "transforms.json":
        return path.parent.name
    if path.parts[-3:] == ("colmap", "sparse", "0"):
        return path.parents[2].name
    return path.name
