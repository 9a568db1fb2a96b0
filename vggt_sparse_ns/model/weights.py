"""Loading the official VGGT checkpoints (facebook/VGGT-1B, facebook/VGGT-1B-Commercial)."""

from __future__ import annotations

import json
import logging
import os

import torch

from vggt_sparse_ns.defaults import DEFAULT_CHECKPOINT
from vggt_sparse_ns.hub import CheckpointFiles, load_state_dict_file, load_state_dict_strictly, resolve_checkpoint
from vggt_sparse_ns.model.config import VGGTConfig
from vggt_sparse_ns.model.vggt import VGGT

logger = logging.getLogger(__name__)

WEIGHT_NAMES = ("model.safetensors", "model.pt", "vggt_1b_commercial.pt")
HOW_TO_GET = (
    f"The weights come from the Hugging Face hub: {DEFAULT_CHECKPOINT} (non-commercial licence) or "
    "facebook/VGGT-1B-Commercial (gated, commercial licence). On a connected machine run "
    f"`hf download {DEFAULT_CHECKPOINT}` (it fills the cache this tool reads), or download "
    "config.json and model.safetensors into a folder and pass that folder as the checkpoint."
)
SKIPPED_PREFIXES = ("track_head.",)
"""Checkpoint parts this project does not implement."""


def load_state_dict_strict(model: VGGT, state: dict) -> None:
    """Load a VGGT checkpoint strictly, skipping the (unimplemented) track head with one log line."""
    skipped = [name for name in state if name.startswith(SKIPPED_PREFIXES)]
    if skipped:
        logger.info("Skipping %d track-head parameters (the track head is not implemented).", len(skipped))
        state = {name: value for name, value in state.items() if not name.startswith(SKIPPED_PREFIXES)}
    load_state_dict_strictly(model, state, "VGGT")


def vggt_checkpoint(source: str | os.PathLike | CheckpointFiles = DEFAULT_CHECKPOINT) -> CheckpointFiles:
    """The files of a VGGT checkpoint (see ``load_pretrained``); WeightsUnavailableError, saying where the
    weights come from, when they cannot be found."""
    return resolve_checkpoint(source, WEIGHT_NAMES, HOW_TO_GET)


def load_pretrained(
    source: str | os.PathLike | CheckpointFiles = DEFAULT_CHECKPOINT,
    device: str | torch.device = "cpu",
) -> VGGT:
    """A VGGT in eval mode with the weights of ``source``, loaded strictly (every parameter, nothing else).

    Args:
        source: a directory holding config.json and model.safetensors or model.pt, a single weights
            file (VGGT-1B architecture assumed), a hub repo id resolved through huggingface_hub's cache
            (downloaded when the hub is reachable), or the files ``vggt_checkpoint`` found.
        device: where the model goes.

    Returns:
        The model, fp32, in eval mode.

    Raises:
        WeightsUnavailableError: the checkpoint cannot be found or read (the message says where to get it).
        CheckpointMismatchError: the weights do not fit the architecture (the message lists the mismatches).

    Example:
        >>> model = load_pretrained(device="cuda")  # the default checkpoint: VGGT-1B from the hub
        >>> predictions = model(images.cuda())  # images [S, 3, H, W] from load_images
        >>> predictions["extrinsic"].shape  # camera-from-world, OpenCV axes; frame 0 is the world frame
        torch.Size([1, S, 3, 4])
    """
    files = vggt_checkpoint(source)
    config = VGGTConfig()
    if files.config is not None:
        config = VGGTConfig.from_dict(json.loads(files.config.read_text()))
    state = load_state_dict_file(files.weights)
    with torch.device("meta"):
        model = VGGT(config)
    load_state_dict_strict(model, state)
    return model.to(device).eval()
