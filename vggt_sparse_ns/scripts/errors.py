"""How commands report a user's mistake: one line on stderr and a non-zero exit status, no traceback."""

from __future__ import annotations

from typing import NoReturn

from rich.console import Console

USER_ERROR_STATUS = 2
STDERR = Console(stderr=True)


def fail(message: str, status: int = USER_ERROR_STATUS) -> NoReturn:
    """Prints `error: message` and exits with `status`."""
    STDERR.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
    raise SystemExit(status)
