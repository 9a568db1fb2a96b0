"""Which output frame is which reference frame: by file name (nerfstudio renames images to frame_00001.png, so
an `ns-process-data images` run on the same folder has the same names), by stem, by order, or through a map."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from vggt_sparse_ns.evaluate.cameras import CameraSet
from vggt_sparse_ns.evaluate.config import EvaluateConfig
from vggt_sparse_ns.evaluate.errors import EvaluationError


@dataclass(frozen=True)
class FrameMatch:
    """Matched frames as index pairs, and the frames each side lacks."""

    output_indices: np.ndarray
    """(M,) int64 indices into the output set."""
    reference_indices: np.ndarray
    """(M,) int64 indices into the reference set, pairwise with ``output_indices``."""
    missing_in_output: tuple[str, ...]
    """Reference frames no output frame matched (e.g. frames the output dropped)."""
    missing_in_reference: tuple[str, ...]
    """Output frames no reference frame matched (e.g. images COLMAP did not register)."""


def file_name(name: str) -> str:
    """The file name without folders, whichever separator the writer used."""
    return PurePosixPath(name.replace("\\", "/")).name


def match_frames(output: CameraSet, reference: CameraSet, config: EvaluateConfig) -> FrameMatch:
    """Pairs output and reference frames as ``config.match`` and ``config.name_map`` say.

    Raises:
        EvaluationError: two frames of one set share a key, the name map cannot be read, or order matching is asked
            for sets of different sizes.
    """
    if config.match == "order":
        return _match_by_order(output, reference)
    renamed = _read_name_map(config.name_map) if config.name_map is not None else None
    output_names = [file_name(name) for name in output.names]
    if renamed is not None:
        output_names = [renamed.get(name, "") for name in output_names]
    output_keys = _keys(output_names, config.match, output.source, skip_empty=renamed is not None)
    reference_keys = _keys([file_name(name) for name in reference.names], config.match, reference.source)
    common = [key for key in output_keys if key in reference_keys]
    output_indices = np.array([output_keys[key] for key in common], dtype=np.int64)
    matched = set(output_indices.tolist())
    return FrameMatch(
        output_indices=output_indices,
        reference_indices=np.array([reference_keys[key] for key in common], dtype=np.int64),
        missing_in_output=tuple(reference.names[i] for key, i in reference_keys.items() if key not in output_keys),
        missing_in_reference=tuple(name for i, name in enumerate(output.names) if i not in matched),
    )


def _key(name: str, match: str) -> str:
    return PurePosixPath(name).stem if match == "stem" and name else name


def _keys(names: list[str], match: str, source: str, skip_empty: bool = False) -> dict[str, int]:
    """Key -> index; an empty name (not in the name map) gets no key."""
    keys: dict[str, int] = {}
    for index, name in enumerate(names):
        if skip_empty and not name:
            continue
        key = _key(name, match)
        if key in keys:
            raise EvaluationError(
                f"two frames of {source} match as {key!r}: match by --match name, by --match order, "
                "or give a --name-map"
            )
        keys[key] = index
    return keys


def _match_by_order(output: CameraSet, reference: CameraSet) -> FrameMatch:
    if len(output) != len(reference):
        raise EvaluationError(
            f"--match order pairs frames by position, but the output has {len(output)} frames and the reference "
            f"{len(reference)}: match by name or give a --name-map"
        )
    return FrameMatch(
        output_indices=np.argsort(np.array(output.names, dtype=object), kind="stable").astype(np.int64),
        reference_indices=np.argsort(np.array(reference.names, dtype=object), kind="stable").astype(np.int64),
        missing_in_output=(),
        missing_in_reference=(),
    )


def _read_name_map(path: Path) -> dict[str, str]:
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvaluationError(f"cannot read the name map {path}: {error}") from error
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise EvaluationError(f"the name map {path} must be one JSON object of output name -> reference name")
    return {file_name(key): file_name(value) for key, value in mapping.items()}
