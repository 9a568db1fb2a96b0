"""Console output of ``ns-process-data vggt-sparse``: a spinner per stage, warnings, the final summary.

Log lines carry rich's time and file:line only on a terminal; elsewhere (a pipe, a file, a test) they are
plain lines that are never wrapped, so they read and grep the same whatever the width or the paths in them.
Failures are reported by cli_errors.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from vggt_sparse_ns.dataset.inputs import skip_warning, skipped_count
from vggt_sparse_ns.interrupts import held_signals
from vggt_sparse_ns.timing import StageTimer

if TYPE_CHECKING:
    from vggt_sparse_ns.dataset import DatasetReport
    from vggt_sparse_ns.images import ImageProblem

EXTRACT_FRAMES_STAGE = "extract frames"
STAGES_WITH_OWN_STATUS = (EXTRACT_FRAMES_STAGE,)
"""Stages whose nerfstudio utilities show their own spinner (rich allows one live display at a time)."""


def log(message: str) -> None:
    """One log line: rich's log (time, file:line) on a terminal, else the plain line, unwrapped."""
    if CONSOLE.is_terminal:
        CONSOLE.log(message)
    else:
        CONSOLE.print(message, soft_wrap=True)


class StageSpinner:
    """``StageTimer.on_start`` callback: logs each stage as it starts and shows a spinner while it runs.

    Ctrl+C and SIGTERM wait while a spinner starts or stops: raised half-way through rich's start, they left
    a display that its stop could not undo (an IndexError and a traceback instead of the one interrupt line)."""

    def __init__(self) -> None:
        self._status: Any = None

    def __call__(self, stage: str) -> None:
        with held_signals():
            self._stop()
            log(f"[bold yellow]{stage.capitalize()}...")
            if stage not in STAGES_WITH_OWN_STATUS:
                self._status = CONSOLE.status(f"[bold yellow]{stage.capitalize()}...", spinner="bouncingBall")
                self._status.start()

    def stop(self) -> None:
        with held_signals():
            self._stop()

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __enter__(self) -> StageSpinner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


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


def _format_export(output_dir: Path, export: Any) -> list[str]:
    """Lines about the exporter's ExportSummary."""
    lines = [
        f"Points written: {export.num_points} ({export.point_source}, confidence >= {export.confidence_threshold:.3g}"
        + (f", voxel {export.voxel_size:.3g}" if export.voxel_size else "")
        + f") to {output_dir / export.ply_file}"
    ]
    if export.depth_dir is not None:
        lines.append(f"Depth maps in {output_dir / export.depth_dir}: train with [bold]{export.depth_flag}[/bold]")
    if export.colmap_dir is not None:
        lines.append(f"COLMAP model in {output_dir / export.colmap_dir}")
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


def _format_rank(rank: dict[str, Any]) -> str:
    """One line per process of a multi-process run: its frames, time, communication and peak memory."""
    first, stop = rank["frames"]
    peak = rank["peak_memory_bytes"]
    inference = rank["seconds"].get("inference", 0.0)
    return (
        f"Rank {rank['rank']} ({rank['device']}): frames {first}-{stop - 1}, inference {inference:.1f} s "
        f"(communication {rank['communication_seconds']:.1f} s), peak memory "
        + (f"{peak / 2**30:.2f} GiB" if peak is not None else "n/a")
    )


def next_step(output_dir: Path, cuda_available: bool) -> str:
    """What to run next on this machine: training with splatfacto needs a CUDA GPU (gsplat's kernels)."""
    train = f"ns-train vggt-splatfacto --data {output_dir}"
    if cuda_available:
        return f"Next: [bold]{train}[/bold]"
    return (
        f"Next: [bold]vggt-sparse-ns view {output_dir}[/bold] to look at it here; training needs a CUDA GPU, which "
        f"PyTorch does not see on this machine: on one that has it, [bold]{train}[/bold]"
    )


def print_summary(
    output_dir: Path, result: DatasetReport, skipped: Mapping[Path, ImageProblem], timer: StageTimer
) -> None:
    """nerfstudio's closing lines, then frames, attention, time per stage, peak memory, what was written and
    what to run next."""
    import torch

    log("[bold green]:tada: :tada: :tada: All DONE :tada: :tada: :tada:")
    frames = f"{result.num_frames} frames reconstructed into {output_dir}"
    log(frames + (f" ({skipped_count(skipped)})" if skipped else ""))
    log(format_attention(result.attention, result.graph_edges))
    stages = ", ".join(
        [f"{name} {seconds:.1f} s" for name, seconds in timer.seconds().items()]
        + [f"{name} {seconds:.1f} s (during {running})" for name, (running, seconds) in timer.seconds_beside().items()]
    )
    log(f"Time: {stages} (total {timer.total_seconds:.1f} s)")
    peak = timer.peak_memory_bytes
    log("Peak GPU memory: " + (f"{peak / 2**30:.2f} GiB" if peak is not None else "n/a (measured on CUDA only)"))
    if result.refinement:
        log(format_refinement(result.refinement))
    for rank in timer.ranks or []:
        log(_format_rank(rank))
    for line in _format_export(output_dir, result.export):
        log(line)
    log(next_step(output_dir, torch.cuda.is_available()))


def warn_skipped(skipped: Mapping[Path, ImageProblem]) -> None:
    """One warning line per skipped file, saying why (``dataset.inputs.skip_warning``)."""
    for path, problem in skipped.items():
        CONSOLE.print(f"[bold yellow]Warning:[/bold yellow] {escape(skip_warning(path, problem))}", soft_wrap=True)
