"""The `vggt-sparse-ns` command: one tyro subcommand per small dataclass command with a `main()` method."""

from __future__ import annotations

from collections.abc import Sequence

import tyro

from vggt_sparse_ns.scripts.evaluate import Evaluate
from vggt_sparse_ns.scripts.view import View

COMMANDS: dict[str, type] = {"evaluate": Evaluate, "view": View}
"""Subcommand name -> command dataclass; each command's `main()` does the work and reports user errors itself."""


def entrypoint(args: Sequence[str] | None = None) -> None:
    """Parses the command line and runs the chosen command."""
    tyro.extras.subcommand_cli_from_dict(COMMANDS, args=args).main()


if __name__ == "__main__":
    entrypoint()
