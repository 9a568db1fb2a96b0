"""Renders the run's summary.json (any JSON object) as a Markdown key/value table for the GUI panel."""

from __future__ import annotations

import json
from typing import Any

from vggt_sparse_ns.output_layout import SUMMARY_FILE

MAX_VALUE_CHARS = 80


def flatten(summary: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested objects become dotted keys ("seconds.inference"); other values stay as they are."""
    rows = []
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(flatten(value, prefix=f"{name}."))
        else:
            rows.append((name, value))
    return rows


def format_value(value: Any) -> str:
    """Numbers with at most 4 significant digits, everything else as compact JSON, cut to MAX_VALUE_CHARS."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(", ", ": "))
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return text


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def summary_markdown(summary: dict[str, Any] | None) -> str:
    """A two-column Markdown table of the summary, or a note when the output has none."""
    if summary is None:
        return f"*No `{SUMMARY_FILE}` in this output.*"
    rows = flatten(summary)
    if not rows:
        return "*The run summary is empty.*"
    lines = ["| key | value |", "| --- | --- |"]
    lines += [f"| {_cell(key)} | {_cell(format_value(value))} |" for key, value in rows]
    return "\n".join(lines)
