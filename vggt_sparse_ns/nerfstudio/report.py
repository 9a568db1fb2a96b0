"""Console output of ``ns-process-data vggt-sparse``: a spinner per stage, the final summary, failures."""

from __future__ import annotations

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


def _format_rank(rank: dict[str, Any]) -> str:
    """One line per process of a multi-process run: its frames, time, communication and peak memory."""
    first, stop = rank["frames"]
    peak = rank["peak_memory_bytes"]
    return (
        f"Rank {rank['rank']} ({rank['device']}): frames {first}-{stop - 1}, inference {rank['seconds'].get('inference', 0.0):.1f} s "
        f"(communication {rank['communication_seconds']:.1f} s), peak memory "
        + (f"{peak / 2**30:.2f} GiB" if peak is not None else "n/a")
    )


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
    for rank in log.ranks or []:
        CONSOLE.log(_format_rank(rank))
    for line in _format_export(result.export):
        CONSOLE.log(line)
    CONSOLE.log(f"Next: [bold]ns-train vggt-splatfacto --data {output_dir}[/bold]")


def warn_skipped(skipped: dict[Path, str]) -> None:
    for path, reason in skipped.items():
        CONSOLE.print(f"[bold yellow]Warning: skipping unreadable image {path}: {reason}")
