"""Files that appear whole or not at all: written under a temporary name, then renamed."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it over ``target`` (atomic on
    one file system), on failure delete it. The file gets the usual permissions (umask)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _to_json(value: Any) -> Any:
    """numpy arrays and scalars (and torch tensors: anything with ``tolist``) and paths as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (array values and paths converted) in one atomic step."""
    text = json.dumps(data, indent=4, default=_to_json)
    with atomic_path(path) as temporary:
        temporary.write_text(text + "\n", encoding="utf-8")
    return path
