"""The PLY reader: the vertex properties of binary and ASCII files, and clear errors for the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vggt_sparse_ns.export.ply import PlyReadError, read_ply, write_ply

POINTS = np.array([[0.0, 1.0, 2.0], [-1.5, 0.25, 3.0], [1e3, -2.0, 0.5]], dtype=np.float32)
COLOURS = np.array([[255, 0, 10], [1, 2, 3], [128, 64, 32]], dtype=np.uint8)


def test_binary_little_endian_with_confidence_reads_every_property(tmp_path: Path):
    path = tmp_path / "points.ply"
    write_ply(path, POINTS, COLOURS, np.array([1.0, 2.5, 9.0], dtype=np.float32))
    vertices = read_ply(path)
    assert list(vertices) == ["x", "y", "z", "red", "green", "blue", "confidence"]
    np.testing.assert_array_equal(np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1), POINTS)
    np.testing.assert_array_equal(vertices["green"], COLOURS[:, 1])
    np.testing.assert_array_equal(vertices["confidence"], [1.0, 2.5, 9.0])


def test_big_endian_doubles_and_ascii_read_the_same_values(tmp_path: Path):
    header = "ply\nformat {fmt} 1.0\ncomment made by hand\nelement vertex 2\nproperty double x\nproperty double y\n"
    header += "property double z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    rows = np.array(
        [(0.5, -1.0, 2.0, 10, 20, 30), (3.0, 4.0, 5.0, 40, 50, 60)],
        dtype=[*((axis, ">f8") for axis in "xyz"), ("red", "u1"), ("green", "u1"), ("blue", "u1")],
    )
    (tmp_path / "big.ply").write_bytes(header.format(fmt="binary_big_endian").encode() + rows.tobytes())
    ascii_body = "0.5 -1.0 2.0 10 20 30\n3.0 4.0 5.0 40 50 60\n"
    (tmp_path / "text.ply").write_text(header.format(fmt="ascii") + ascii_body)
    for name in ("big.ply", "text.ply"):
        vertices = read_ply(tmp_path / name)
        np.testing.assert_array_equal(vertices["x"], [0.5, 3.0])
        np.testing.assert_array_equal(vertices["blue"], [30, 60])
        assert vertices["blue"].dtype == np.uint8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a ply at all", "end_header"),
        (b"obj\nend_header\n", "not a PLY file"),
        (
            b"ply\nformat binary_little_endian 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n",
            "vertex element must come first",
        ),
        (
            b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n\x00\x00",
            "truncated",
        ),
        (
            b"ply\nformat binary_middle_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n",
            "unsupported format",
        ),
    ],
)
def test_malformed_files_raise_one_clear_error(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.ply"
    path.write_bytes(content)
    with pytest.raises(PlyReadError, match=message):
        read_ply(path)


def test_missing_file_names_the_path(tmp_path: Path):
    with pytest.raises(PlyReadError, match="point cloud not found: .*missing.ply"):
        read_ply(tmp_path / "missing.ply")
