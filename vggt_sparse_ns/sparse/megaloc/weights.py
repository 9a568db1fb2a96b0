"""Loading the published MegaLoc weights (hub repo gberton/MegaLoc, MIT licence)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from vggt_sparse_ns.defaults import DEFAULT_MEGALOC_CHECKPOINT
from vggt_sparse_ns.hub import CheckpointFiles, load_state_dict_file, load_state_dict_strictly, resolve_checkpoint
from vggt_sparse_ns.sparse.megaloc.model import MegaLoc, MegaLocConfig, build_megaloc

WEIGHT_NAMES = ("model.safetensors",)
HOW_TO_GET = (
    f"MegaLoc's weights (MIT licence) are the file model.safetensors of the Hugging Face hub repo "
    f"{DEFAULT_MEGALOC_CHECKPOINT}. On a connected machine run `hf download {DEFAULT_MEGALOC_CHECKPOINT} "
    "model.safetensors` (it fills the cache this tool "
    "reads), or download model.safetensors into a folder and pass that folder (or the file) as the checkpoint."
)


def megaloc_checkpoint(source: str | os.PathLike | CheckpointFiles = DEFAULT_MEGALOC_CHECKPOINT) -> CheckpointFiles:
    """The files of a MegaLoc checkpoint (see ``load_megaloc``); WeightsUnavailableError, saying where the
    weights come from, when they cannot be found."""
    return resolve_checkpoint(source, WEIGHT_NAMES, HOW_TO_GET)


def load_megaloc(
    source: str | os.PathLike | CheckpointFiles = DEFAULT_MEGALOC_CHECKPOINT,
    device: str | torch.device = "cpu",
    config: MegaLocConfig | Mapping[str, Any] | None = None,
) -> MegaLoc:
    """A MegaLoc in eval mode with the weights of ``source``: a directory holding model.safetensors
    (and optionally config.json), a single weights file, a hub repo id resolved through
    huggingface_hub's cache, or the files ``megaloc_checkpoint`` found. The architecture is ``config``
    if given, else the config.json found beside the weights, else the published model's."""
    files = megaloc_checkpoint(source)
    if config is None and files.config is not None:
        config = json.loads(files.config.read_text())
    state = load_state_dict_file(files.weights)
    with torch.device("meta"):
        model = build_megaloc(config)
    load_state_dict_strictly(model, state, "MegaLoc")
    return model.to(device).eval()
