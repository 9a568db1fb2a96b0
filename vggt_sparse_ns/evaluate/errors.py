"""The evaluation's user-facing error: one message that says what is wrong (the CLI prints it and exits 1: cli_errors)."""

from __future__ import annotations


class EvaluationError(Exception):
    """A camera set cannot be read, or the two sets cannot be compared (no common frames, too few to align)."""
