"""The reports as one rich table: a row per figure, a column per evaluated output."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.table import Table

from vggt_sparse_ns.evaluate.report import EvaluationReport

Row = tuple[str, Callable[[EvaluationReport], str]]


def _formatted(value: float, spec: str) -> str:
    return "n/a" if value != value else format(value, spec)


def _percent(value: float, spec: str = ".1f") -> str:
    """A fraction in percent; accuracies with one decimal, small errors with three significant digits."""
    return "n/a" if value != value else f"{100 * value:{spec}} %"


def _rows(report: EvaluationReport) -> list[Row]:
    """The figures of the table, in order; thresholds come from the report itself."""
    relative = report.relative_pose
    rows: list[Row] = [
        (
            "frames matched (output / reference)",
            lambda r: f"{r.frames.matched} ({r.frames.output} / {r.frames.reference})",
        ),
        ("reference frames missing from output", lambda r: str(len(r.frames.missing_in_output))),
        ("frame pairs", lambda r: str(r.relative_pose.pairs)),
    ]
    rows += [
        (f"rotation accuracy < {t:g}°", lambda r, t=t: _percent(r.relative_pose.rotation_accuracy[t]))
        for t in relative.rotation_accuracy
    ]
    rows += [
        (f"translation-direction accuracy < {t:g}°", lambda r, t=t: _percent(r.relative_pose.translation_accuracy[t]))
        for t in relative.translation_accuracy
    ]
    rows += [(f"pose AUC@{t:g}", lambda r, t=t: _formatted(r.relative_pose.auc[t], ".3f")) for t in relative.auc]
    rows += [
        ("median rotation error (°)", lambda r: _formatted(r.relative_pose.rotation_error_median, ".3g")),
        (
            "median translation-direction error (°)",
            lambda r: _formatted(r.relative_pose.translation_error_median, ".3g"),
        ),
        ("ATE RMSE (reference units)", lambda r: _formatted(r.trajectory.rmse, ".3g")),
        ("ATE RMSE / reference extent", lambda r: _percent(r.trajectory.rmse_fraction_of_extent, ".3g")),
        ("alignment inliers", lambda r: f"{r.trajectory.inliers} of {r.frames.matched}"),
        ("focal error, median (relative)", lambda r: _percent(r.focal_length.relative_error_median, ".3g")),
        ("focal error, max (relative)", lambda r: _percent(r.focal_length.relative_error_max, ".3g")),
    ]
    return rows


def report_table(reports: Sequence[EvaluationReport], names: Sequence[str]) -> Table:
    """One column per report, headed by ``names``; rows follow the first report's thresholds."""
    table = Table(title=f"Cameras against {reports[0].reference}", title_justify="left")
    table.add_column("figure")
    for name in names:
        table.add_column(name, justify="right")
    for label, cell in _rows(reports[0]):
        table.add_row(label, *(cell(report) for report in reports))
    return table
