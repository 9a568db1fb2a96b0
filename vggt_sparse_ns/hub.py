"""Finding checkpoint files: a local directory or file, or a Hugging Face hub repo through
huggingface_hub's cache. Failures become one ``WeightsUnavailableError`` naming the file
and how to get it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from torch import Tensor, nn


ConfigT = TypeVar("ConfigT")


def config_from_mapping(config_type: type[ConfigT], config: ConfigT | Mapping[str, Any] | None) -> ConfigT:
    """An architecture config dataclass from an instance, a config.json mapping (keys that are not fields,
    such as the fixtures' ``seed``/``note`` or the hub's ``enable_track``, are ignored; lists become
    tuples), or None (the defaults: the published model)."""
    if config is None:
        return config_type()
    if isinstance(config, config_type):
        return config
    if not isinstance(config, Mapping):
        raise TypeError(f"expected a {config_type.__name__} or a config.json mapping, got {type(config).__name__}")
    known = {field.name for field in dataclasses.fields(config_type)}
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in config.items() if key in known}
    return config_type(**values)


class WeightsUnavailableError(RuntimeError):
    """The weights could not be found locally nor fetched."""


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's keys or shapes do not match the model's architecture."""


@dataclass(frozen=True)
class CheckpointFiles:
    weights: Path
    config: Path | None
    """config.json beside the weights, if there is one."""


def _looks_like_repo_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~")) and not os.path.isabs(source)


def _from_directory(directory: Path, weight_names: Sequence[str]) -> CheckpointFiles:
    for name in weight_names:
        if (directory / name).is_file():
            config = directory / "config.json"
            return CheckpointFiles(directory / name, config if config.is_file() else None)
    raise WeightsUnavailableError(
        f"No weights in {directory}: expected one of {', '.join(weight_names)} (with an optional config.json)."
    )


def _cached(repo_id: str, name: str) -> Path | None:
    """The file from the local Hugging Face cache, without touching the network; None if absent."""
    from huggingface_hub import try_to_load_from_cache

    path = try_to_load_from_cache(repo_id, name)
    return Path(path) if isinstance(path, str) else None


def _on_hub(repo_id: str, name: str) -> bool:
    """Whether the hub repo holds ``name``: one metadata request, not retried (huggingface_hub retries its
    downloads' requests for a minute when the network is down). Raises what the hub or the network raised."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, name), retry_on_errors=False)
    except EntryNotFoundError:
        return False
    return True


def _from_hub(repo_id: str, weight_names: Sequence[str], how_to_get: str) -> CheckpointFiles:
    """Cached files first (every candidate name, no network), then the first candidate the hub holds is
    downloaded. The hub is asked once per name before any download, so no network fails within seconds."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    for name in weight_names:
        weights = _cached(repo_id, name)
        if weights is not None:
            return CheckpointFiles(weights, _cached(repo_id, "config.json"))
    try:
        name = next((name for name in weight_names if _on_hub(repo_id, name)), None)
        if name is not None:
            weights = Path(hf_hub_download(repo_id, name))
    except GatedRepoError:
        raise WeightsUnavailableError(
            f"{repo_id} is gated: accept its licence on its hub page and log in (`hf auth login`). {how_to_get}"
        ) from None
    except RepositoryNotFoundError:
        raise WeightsUnavailableError(f"No hub repository {repo_id}. {how_to_get}") from None
    except Exception as error:  # offline, network or permission errors
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise WeightsUnavailableError(
            f"Could not get {' or '.join(weight_names)} of {repo_id}: it is not in the Hugging Face cache and the "
            f"hub could not be reached ({reason}). {how_to_get}"
        ) from None
    if name is None:
        raise WeightsUnavailableError(f"{repo_id} holds none of {', '.join(weight_names)}. {how_to_get}")
    try:
        config = Path(hf_hub_download(repo_id, "config.json"))
    except Exception:
        config = None
    return CheckpointFiles(weights, config)


def resolve_checkpoint(
    source: str | os.PathLike | CheckpointFiles, weight_names: Sequence[str], how_to_get: str
) -> CheckpointFiles:
    """Weights (and config.json) from a directory, a single weights file, or a hub repo id; files already
    found are returned as they are.

    ``weight_names`` are tried in order in a directory or hub repo; ``how_to_get`` ends
    every error message (where the weights come from and how to fetch them).
    """
    if isinstance(source, CheckpointFiles):
        return source
    path = Path(source).expanduser()
    if path.is_dir():
        return _from_directory(path, weight_names)
    if path.is_file():
        return CheckpointFiles(path, None)
    if isinstance(source, str) and _looks_like_repo_id(source):
        return _from_hub(source, weight_names, how_to_get)
    raise WeightsUnavailableError(f"Checkpoint {source} does not exist. {how_to_get}")


def load_state_dict_file(path: Path) -> dict:
    """A state dict from .safetensors or a torch pickle (.pt/.pth/.bin, tensors only). Ctrl+C and SIGTERM wait
    until the file is read: raised inside the readers' native code they came out as another error (safetensors:
    "could not determine the shape of object type"), reported as an unreadable file instead of an interrupt."""
    import torch

    from vggt_sparse_ns.interrupts import held_signals

    try:
        with held_signals():
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return load_file(str(path))
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise WeightsUnavailableError(f"Could not read the weights file {path}: {error}") from error
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return state


def load_state_dict_strictly(module: nn.Module, state: Mapping[str, Tensor], architecture: str) -> None:
    """Load every key (assigning the tensors, so meta-device modules work); on any mismatch
    raise one CheckpointMismatchError counting and listing the first problems."""
    expected = {name: tuple(value.shape) for name, value in module.state_dict().items()}
    shapes = [
        f"shape of {name}: checkpoint {tuple(state[name].shape)}, model {shape}"
        for name, shape in expected.items()
        if name in state and tuple(state[name].shape) != shape
    ]
    missing = [f"missing {name}" for name in expected if name not in state]
    unexpected = [f"unexpected {name}" for name in state if name not in expected]
    if shapes or missing or unexpected:
        first = (shapes + missing + unexpected)[:8]
        raise CheckpointMismatchError(
            f"The checkpoint does not match the {architecture} architecture of its config ({len(shapes)} wrong "
            f"shapes, {len(missing)} missing, {len(unexpected)} unexpected keys). First: " + "; ".join(first)
        )
    module.load_state_dict(state, strict=True, assign=True)
