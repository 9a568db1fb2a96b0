"""Errors the viewer reports to users as one message (the CLI prints it and exits with status 1: cli_errors)."""

from __future__ import annotations


class ViewerError(Exception):
    """Base of the viewer's user-facing errors: the message says what is wrong and what to do."""


class ReconstructionFolderError(ViewerError):
    """The output folder is missing a file the viewer needs, or holds one it cannot read."""


class PortInUseError(ViewerError):
    """The requested host/port cannot be bound."""
