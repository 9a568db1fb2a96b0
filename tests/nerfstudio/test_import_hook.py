"""The import hook adds ``vggt-sparse`` to ``ns-process-data`` and changes nothing else."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
import tyro

import vggt_sparse_ns.nerfstudio.import_hook as import_hook
from vggt_sparse_ns.nerfstudio.import_hook import TARGET_MODULE, ProcessDataFinder

REPO = Path(__file__).resolve().parents[2]
PTH_FILE = REPO / "hooks" / "vggt_sparse_ns_process_data.pth"


def subcommand_names(module) -> list[str]:
    return [get_args(option)[1].name for option in get_args(module.Commands)]


def fresh_process_data(monkeypatch: pytest.MonkeyPatch, hooked: bool):
    """Import nerfstudio.scripts.process_data anew, with or without the finder on sys.meta_path."""
    finders = [finder for finder in sys.meta_path if finder is not ProcessDataFinder]
    monkeypatch.setattr(sys, "meta_path", [ProcessDataFinder, *finders] if hooked else finders)
    monkeypatch.delitem(sys.modules, TARGET_MODULE, raising=False)
    return importlib.import_module(TARGET_MODULE)


def test_the_hook_appends_vggt_sparse_and_keeps_every_stock_subcommand(monkeypatch) -> None:
    stock = subcommand_names(fresh_process_data(monkeypatch, hooked=False))
    assert {"images", "video", "polycam", "metashape", "realitycapture", "record3d", "odm"} <= set(stock)
    assert "vggt-sparse" not in stock
    assert subcommand_names(fresh_process_data(monkeypatch, hooked=True)) == [*stock, "vggt-sparse"]


@pytest.mark.parametrize(("subcommand", "flag"), [("images", "--matching-method"), ("vggt-sparse", "--checkpoint")])
def test_help_of_stock_and_added_subcommands_works(monkeypatch, capsys, subcommand: str, flag: str) -> None:
    module = fresh_process_data(monkeypatch, hooked=True)
    with pytest.raises(SystemExit) as exited:
        tyro.cli(module.Commands, args=[subcommand, "--help"])
    assert exited.value.code == 0
    assert flag in capsys.readouterr().out


def test_failures_exit_non_zero_through_nerfstudios_entrypoint(monkeypatch, tmp_path: Path) -> None:
    module = fresh_process_data(monkeypatch, hooked=True)
    argv = ["ns-process-data", "vggt-sparse", "--data", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        module.entrypoint()
    assert exited.value.code == 1


def test_an_error_while_extending_leaves_ns_process_data_as_it_was(monkeypatch) -> None:
    def broken(module) -> None:
        raise RuntimeError("simulated incompatibility")

    monkeypatch.setattr(import_hook, "add_subcommand", broken)
    module = fresh_process_data(monkeypatch, hooked=True)
    assert "images" in subcommand_names(module) and "vggt-sparse" not in subcommand_names(module)


def test_the_finder_answers_for_no_other_module() -> None:
    assert ProcessDataFinder.find_spec("json") is None
    assert ProcessDataFinder.find_spec("nerfstudio.scripts.train") is None


def test_the_pth_line_is_silent_when_the_package_cannot_be_imported() -> None:
    line = PTH_FILE.read_text().strip()
    assert line.startswith("import ") and "\n" not in line, "site.py executes single lines starting with 'import '"
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"{line}\nprint('started')"], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "started", "")


def test_the_installed_hook_imports_nothing_heavy_at_start_up() -> None:
    probe = (
        "import sys; "
        "print(any(getattr(f, '__name__', '') == 'ProcessDataFinder' for f in sys.meta_path), "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('vggt_sparse_ns', 'nerfstudio', 'torch', 'tyro', 'numpy')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    installed, modules = result.stdout.split(" ", 1)
    assert installed == "True", f"the .pth hook is not active in {sys.prefix}: reinstall with `pip install -e .`"
    assert modules.strip() == str(
        ["vggt_sparse_ns", "vggt_sparse_ns.lazy", "vggt_sparse_ns.nerfstudio", "vggt_sparse_ns.nerfstudio.import_hook"]
    )
