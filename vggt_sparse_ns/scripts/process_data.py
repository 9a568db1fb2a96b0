"""``ns-process-data-vggt``: ``ns-process-data vggt-sparse`` as a console script of our own, for environments
where the import hook (a .pth file) is not processed.

Light at import: the command's machinery (tyro, nerfstudio, torch: most of a second) is imported inside
``entrypoint``, once Ctrl+C and SIGTERM end the process with one line, so that an interrupt while the command
loads is not a traceback (SIGINT) or a silent death (SIGTERM). Once the command has ended (finished, or its
one line printed), the two signals are ignored: one that arrives while the interpreter exits does not turn a
finished run into a death by SIGTERM or a traceback. Multi-process runs re-import this module in each process
they start.
"""

from __future__ import annotations

import signal

from vggt_sparse_ns.cli_errors import reported
from vggt_sparse_ns.interrupts import HELD_SIGNALS


def entrypoint() -> None:
    for number in HELD_SIGNALS:  # what reported() gives back when the command has ended (see below)
        signal.signal(number, signal.SIG_IGN)
    with reported():  # the command reports its own interrupts (what the output folder holds) once it runs
        import tyro

        from vggt_sparse_ns.nerfstudio.process_data import ProcessVGGTSparse

        tyro.extras.set_accent_color("bright_yellow")
        tyro.cli(ProcessVGGTSparse, description=ProcessVGGTSparse.__doc__).main()


if __name__ == "__main__":
    entrypoint()
