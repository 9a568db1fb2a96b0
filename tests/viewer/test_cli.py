"""`vggt-sparse-ns view`: flags, the printed URL, and one clear message with exit status 1 for bad input (cli_errors.py)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import tyro

from vggt_sparse_ns.scripts.cli import COMMANDS, entrypoint
from vggt_sparse_ns.scripts.view import View
from vggt_sparse_ns.viewer import ViewerConfig

REPO = Path(__file__).resolve().parents[2]


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vggt_sparse_ns.scripts.cli", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_flags_fill_the_viewer_config(tmp_path: Path):
    args = ["view", str(tmp_path), "--port", "8123", "--host", "0.0.0.0", "--max-points", "1000"]
    command = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=args)
    assert command == View(output_dir=tmp_path, viewer=ViewerConfig(host="0.0.0.0", port=8123, max_points=1000))


def test_folder_without_transforms_prints_one_message_and_exits_1(tmp_path: Path):
    result = _run_cli("view", str(tmp_path))
    assert result.returncode == 1
    assert f"Error: no transforms.json in {tmp_path}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_folder_without_point_cloud_exits_1_with_the_missing_path(make_output, capsys, free_port: int):
    root = make_output(cameras=2, points=10)
    (root / "sparse_pc.ply").unlink()
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["view", str(root), "--port", str(free_port)])
    assert exit_info.value.code == 1
    assert f"Error: point cloud not found: {root / 'sparse_pc.ply'}" in capsys.readouterr().err.replace("\n", "")


def test_port_in_use_prints_one_message_and_exits_1(synthetic_output: Path, free_port: int):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as occupant:
        occupant.bind(("127.0.0.1", free_port))
        occupant.listen()
        result = _run_cli("view", str(synthetic_output), "--port", str(free_port))
    assert result.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{free_port}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_view_prints_the_url_and_serves_the_page_until_interrupted(synthetic_output: Path, free_port: int):
    command = [
        sys.executable,
        "-m",
        "vggt_sparse_ns.scripts.cli",
        "view",
        str(synthetic_output),
        "--port",
        str(free_port),
    ]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, printed = f"http://127.0.0.1:{free_port}", ""
        deadline = time.monotonic() + 30
        while url not in printed and time.monotonic() < deadline and process.poll() is None:
            printed += process.stdout.readline()
        assert f"Viewer running locally at: {url}" in printed
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
