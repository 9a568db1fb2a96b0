"""The package's front door: every public name resolves from ``vggt_sparse_ns``, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import vggt_sparse_ns


@pytest.mark.parametrize("name", vggt_sparse_ns.__all__)
def test_every_public_name_resolves_from_the_package(name: str) -> None:
    assert getattr(vggt_sparse_ns, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        vggt_sparse_ns.nonexistent  # noqa: B018


def test_importing_the_package_loads_neither_torch_nor_the_model() -> None:
    code = "import sys, vggt_sparse_ns; print(sorted(m for m in ('torch', 'PIL', 'vggt_sparse_ns.model') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
