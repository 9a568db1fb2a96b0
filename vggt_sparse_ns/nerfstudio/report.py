"""Console output of ``ns-process-data vggt-sparse``: a spinner per stage, the final summary, failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from nerfstudio.utils.rich_utils import CONSOLE

from vggt_sparse_ns.pipeline.stages import StageLog

if TYPE_CHECKING:
    from vggt_sparse_ns.nerfstudio.dataset import DatasetReport

EXTRACT_FRAMES_STAGE = "extract frames"
STAGES_WITH_OWN_STATUS = (EXTRACT_FRAMES_STAGE,)
"""Stages whose nerfstudio utilities show their own spinner (rich allows one live display at a time)."""


class StageSpinner:
    """``StageLog`` callback: logs each stage as it starts and shows a spinner while it runs."""

    def __init__(self) -> None:
        self._status: Any = None

    def __call__(self, stage: str) -> None:
        self.stop()
        CONSOLE.log(f"[bold yellow]{stage.capitalize()}...")
        if stage not in STAGES_WITH_OWN_STATUS:
            self._status = CONSOLE.status(f"[bold yellow]{stage.capitalize()}...", spinner="bouncingBall")
            self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __enter__(self) -> StageSpinner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _expected_errors() -> tuple[type[BaseException], ...]:
    from vggt_sparse_ns.export.config import ExportError
    from vggt_sparse_ns.hub import CheckpointMismatchError, WeightsUnavailableError
    from vggt_sparse_ns.images import ImageLoadError
    from vggt_sparse_ns.pipeline.errors import InputError, ReconstructionOutOfMemoryError
    from vggt_sparse_ns.viewer.errors import ViewerError

    return (
        InputError,
        ImageLoadError,
        WeightsUnavailableError,
        CheckpointMismatchError,
        ReconstructionOutOfMemoryError,
        ExportError,
        ViewerError,
    )


def fail(error: BaseException, verbose: bool) -> NoReturn:
    """Print one message (and the traceback for unexpected errors or with --verbose), then exit with status 1.

    Raising SystemExit ourselves matters: nerfstudio's ns-process-data entrypoint turns RuntimeError and
    ValueError into a printed line and exit status 0.
    """
    if verbose or not isinstance(error, _expected_errors()):
        CONSOLE.print_exception()
    CONSOLE.print(f"[bold red]Error:[/bold red] {error}")
    raise SystemExit(1) from None


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict) and value:
        numbers = [v for v in value.values() if isinstance(v, (int, float))]
        return f"mean {sum(numbers) / len(numbers):.3g}" if numbers else str(value)
    return str(value)


def format_attention(attention: dict[str, Any], graph_edges: int | None) -> str:
    """One line: the strategy, its settings and, for a frame graph, its statistics (first scene)."""
    details = dict(attention)
    strategy = details.pop("strategy", "unknown")
    graphs = details.pop("graphs", None)
    if graphs:
        details.update(graphs[0])
    elif graph_edges is not None:
        details["edges"] = graph_edges
    shown = [f"{key.replace('_', ' ')} {_format_value(value)}" for key, value in details.items() if value is not None]
    return f"Global attention: {strategy}" + (f" ({', '.join(shown)})" if shown else "")


def _format_export(export: Any) -> list[str]:
    """Lines about the exporter's ExportSummary."""
    lines = [
        f"Points written: {export.num_points} ({export.point_source}, confidence >= {export.confidence_threshold:.3g}"
        + (f", voxel {export.voxel_size:.3g}" if export.voxel_size else "")
        + f") to {export.ply_path}"
    ]
    if export.depth_dir is not None:
        lines.append(f"Depth maps in {export.depth_dir}: train with [bold]{export.depth_flag}[/bold]")
    if export.colmap_dir is not None:
        lines.append(f"COLMAP model in {export.colmap_dir}")
    return lines


def format_refinement(figures: dict[str, Any]) -> str:
    """One line about a refinement's summary (refine()'s ``refinement`` dict)."""
    seconds = figures.get("seconds", {})
    timing = f"{sum(seconds.values()):.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()) + ")"
    kept = figures.get("kept_frames", [])
    shown = ", ".join(str(frame) for frame in kept[:10]) + (", ..." if len(kept) > 10 else "")
    if "fallback" in figures:
        return f"Refinement kept VGGT's cameras: {figures['fallback']}; {timing}"
    return (
        f"Refinement: {figures['registered_frames']} frames adjusted"
        + (f", {len(kept)} kept VGGT's camera (frames {shown})" if kept else "")
        + f"; reprojection error {figures['reprojection_error_px_before']:.2f} -> "
        f"{figures['reprojection_error_px']:.2f} px; {figures['points']} points, {figures['observations']} "
        f"observations; {figures['pairs_verified']} of {figures['pairs_matched']} pairs verified; {timing}"
    )


def _refinement_figures(output_dir: Path) -> dict[str, Any] | None:
    """The refinement recorded in vggt/summary.json, if the run refined."""
    from vggt_sparse_ns.export.run_info import RUN_DIR, SUMMARY_FILE

    try:
        return json.loads((output_dir / RUN_DIR / SUMMARY_FILE).read_text()).get("refinement")
    except (OSError, ValueError, AttributeError):
        return None


def print_summary(output_dir: Path, result: DatasetReport, skipped: dict[Path, str], log: StageLog) -> None:
    """nerfstudio's closing lines, then frames, attention, time per stage, peak memory and what was written."""
    CONSOLE.log("[bold green]:tada: :tada: :tada: All DONE :tada: :tada: :tada:")
    frames = f"{result.num_frames} frames reconstructed into {output_dir}"
    CONSOLE.log(frames + (f" ({len(skipped)} unreadable images skipped)" if skipped else ""))
    CONSOLE.log(format_attention(result.attention, result.graph_edges))
    stages = ", ".join(
        [f"{name} {seconds:.1f} s" for name, seconds in log.seconds.items()]
        + [f"{name} {seconds:.1f} s (during {running})" for name, (running, seconds) in log.beside.items()]
    )
    CONSOLE.log(f"Time: {stages} (total {log.total_seconds:.1f} s)")
    peak = log.peak_memory_bytes
    CONSOLE.log(
        "Peak GPU memory: " + (f"{peak / 2**30:.2f} GiB" if peak is not None else "n/a (measured on CUDA only)")
    )
    refinement = _refinement_figures(output_dir)
    if refinement:
        CONSOLE.log(format_refinement(refinement))
    for line in _format_export(result.export):
        CONSOLE.log(line)
    CONSOLE.log(f"Next: [bold]ns-train vggt-splatfacto --data {output_dir}[/bold]")


def warn_skipped(skipped: dict[Path, str]) -> None:
    for path, reason in skipped.items():
        CONSOLE.print(f"[bold yellow]Warning: skipping unreadable image {path}: {reason}")
