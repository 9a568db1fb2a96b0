"""Loading checkpoints: hub layout folders, single files, .pt files, and clear failures."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import load_file

from vggt_sparse_ns.hub import WeightsUnavailableError
from vggt_sparse_ns.model import CheckpointMismatchError, load_pretrained


@pytest.fixture
def tiny_state(vggt_tiny_dir):
    return load_file(str(vggt_tiny_dir / "model.safetensors"))


@pytest.fixture
def offline_empty_hub_cache(tmp_path, monkeypatch):
    """No network and nothing cached: what a user without downloaded weights has."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_pt_checkpoint_with_track_head_loads_and_skips_it_with_one_log_line(
    tmp_path, vggt_tiny_dir, tiny_state, vggt_tiny, caplog
):
    state = dict(tiny_state)
    state["track_head.feature_extractor.norm.weight"] = torch.ones(3)
    torch.save(state, tmp_path / "model.pt")
    shutil.copy(vggt_tiny_dir / "config.json", tmp_path / "config.json")
    with caplog.at_level(logging.INFO, logger="vggt_sparse_ns.model.weights"):
        model = load_pretrained(tmp_path)
    assert [r.message for r in caplog.records if "track" in r.message.lower()] == [
        "Skipping 1 track-head parameters (the track head is not implemented)."
    ]
    for name, value in vggt_tiny.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)


def test_single_weights_file_assumes_vggt_1b_and_reports_the_shape_mismatch(vggt_tiny_dir):
    with pytest.raises(CheckpointMismatchError, match=r"shape of aggregator\.camera_token: checkpoint \(1, 2, 1, 64\)"):
        load_pretrained(vggt_tiny_dir / "model.safetensors")


def test_missing_keys_are_listed(tmp_path, vggt_tiny_dir, tiny_state):
    state = {k: v for k, v in tiny_state.items() if not k.startswith("camera_head.")}
    torch.save(state, tmp_path / "model.pt")
    shutil.copy(vggt_tiny_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(CheckpointMismatchError, match=r"missing camera_head\."):
        load_pretrained(tmp_path)


def test_hub_id_offline_without_cache_names_the_repo_and_how_to_get_it(offline_empty_hub_cache):
    with pytest.raises(WeightsUnavailableError) as raised:
        load_pretrained("facebook/VGGT-1B")
    message = str(raised.value)
    assert "facebook/VGGT-1B" in message
    assert "model.safetensors" in message
    assert "hf download facebook/VGGT-1B" in message


OFFLINE_SCRIPT = """
import time
from vggt_sparse_ns.hub import WeightsUnavailableError
from vggt_sparse_ns.model.weights import vggt_checkpoint

started = time.perf_counter()
try:
    vggt_checkpoint()
except WeightsUnavailableError as error:
    print(error)
print(f"seconds {time.perf_counter() - started:.3f}")
"""


def test_the_default_checkpoint_without_network_fails_within_seconds_without_retrying(tmp_path):
    """No HF_HUB_OFFLINE, an empty cache, and a hub that refuses connections (a closed local port)."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("HF_")}
    environment.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT],
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    output = result.stdout + result.stderr
    assert "Retrying" not in output
    assert "facebook/VGGT-1B" in output and "could not be reached" in output
    assert "hf download facebook/VGGT-1B" in output
    seconds = float(output.split("seconds ")[-1])
    assert seconds < 5.0, f"the clear message came after {seconds:.1f} s"


def test_hub_id_is_resolved_from_the_huggingface_cache(offline_empty_hub_cache, tmp_path, vggt_tiny_dir):
    snapshot = tmp_path / "hub" / "models--someone--vggt-tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(vggt_tiny_dir / name, snapshot / name)
    refs = tmp_path / "hub" / "models--someone--vggt-tiny" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    model = load_pretrained("someone/vggt-tiny")
    assert model.config.embed_dim == 64


def test_missing_path_and_empty_folder_give_clear_messages(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere" / "weights")
    with pytest.raises(WeightsUnavailableError, match="expected one of model.safetensors"):
        load_pretrained(tmp_path)


def test_corrupt_weights_file_names_the_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsUnavailableError, match="model.safetensors"):
        load_pretrained(tmp_path)


def test_ctrl_c_while_a_weights_file_is_read_is_raised_as_the_interrupt_once_the_file_is_read(tmp_path, monkeypatch):
    """Raised inside safetensors' native reader, the interrupt came out as an unreadable-file error."""
    import signal

    import safetensors.torch

    from vggt_sparse_ns.hub import load_state_dict_file
    from vggt_sparse_ns.interrupts import Interrupted, signals_as_interrupted

    read_whole = []

    def read_interrupted(name: str) -> dict:
        signal.raise_signal(signal.SIGINT)  # Ctrl+C as the file is read
        read_whole.append(name)
        return {}

    monkeypatch.setattr(safetensors.torch, "load_file", read_interrupted)
    path = tmp_path / "model.safetensors"
    with pytest.raises(Interrupted), signals_as_interrupted():
        load_state_dict_file(path)
    assert read_whole == [str(path)]
