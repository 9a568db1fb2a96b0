"""Adds ``vggt-sparse`` to ``ns-process-data`` when nerfstudio's CLI module is imported (docs/import_hook.md).

nerfstudio 1.1.5 builds ``ns-process-data`` from a fixed ``Commands`` union in
``nerfstudio.scripts.process_data`` with no plugin hook. A .pth file installed with this package calls
``install()`` at interpreter start; it puts a finder on ``sys.meta_path`` that answers for that one
module name only: it lets the regular finders locate the module and wraps its loader so that, right
after the module has executed, ``Commands`` is extended with our subcommand. Nothing else is imported
at start-up, nothing happens without nerfstudio, and every error is swallowed: an interpreter must
never fail to start, nor ns-process-data to run, because of this hook.
"""

from __future__ import annotations

import sys

TARGET_MODULE = "nerfstudio.scripts.process_data"
SUBCOMMAND = "vggt-sparse"


def add_subcommand(module: object) -> None:
    """Extend ``module.Commands`` (a tyro union of annotated subcommands) with ``vggt-sparse``."""
    from typing import Annotated, Union, get_args

    import tyro

    from vggt_sparse_ns.nerfstudio.process_data import ProcessVGGTSparse

    commands = module.Commands
    if any(get_args(option)[:1] == (ProcessVGGTSparse,) for option in get_args(commands)):
        return
    module.Commands = Union[commands, Annotated[ProcessVGGTSparse, tyro.conf.subcommand(name=SUBCOMMAND)]]  # noqa: UP007


class ProcessDataFinder:
    """Meta-path finder for ``nerfstudio.scripts.process_data`` alone; it never loads anything itself."""

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> object:
        if name != TARGET_MODULE:
            return None
        try:
            return cls._extending_spec(name, path, target)
        except Exception:
            return None

    @classmethod
    def _extending_spec(cls, name: str, path: object, target: object) -> object:
        for finder in sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        execute = loader.exec_module

        def exec_module(module: object) -> None:
            execute(module)
            try:  # noqa: SIM105 (contextlib.suppress would import contextlib in every interpreter)
                add_subcommand(module)
            except Exception:
                pass

        loader.exec_module = exec_module
        return spec


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if ProcessDataFinder not in sys.meta_path:
        sys.meta_path.insert(0, ProcessDataFinder)
