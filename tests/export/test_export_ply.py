"""sparse_pc.ply: binary little-endian, xyz + rgb + confidence, readable by nerfstudio's loader (open3d)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vggt_sparse_ns.export.ply import read_ply, write_ply


def _cloud(count: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(count, 3)).astype(np.float32),
        rng.integers(0, 256, (count, 3), dtype=np.uint8),
        rng.uniform(1, 20, count).astype(np.float32),
    )


def test_open3d_reads_positions_and_colours_despite_the_confidence_property(tmp_path: Path) -> None:
    import open3d as o3d

    xyz, rgb, confidence = _cloud()
    path = write_ply(tmp_path / "sparse_pc.ply", xyz, rgb, confidence)
    cloud = o3d.io.read_point_cloud(str(path))
    np.testing.assert_array_equal(np.asarray(cloud.points, dtype=np.float32), xyz)
    np.testing.assert_allclose(np.asarray(cloud.colors) * 255, rgb, atol=1e-6)


def test_written_properties_read_back_exactly(tmp_path: Path) -> None:
    xyz, rgb, confidence = _cloud()
    vertices = read_ply(write_ply(tmp_path / "points.ply", xyz, rgb, confidence))
    assert list(vertices) == ["x", "y", "z", "red", "green", "blue", "confidence"]
    np.testing.assert_array_equal(np.stack([vertices[a] for a in "xyz"], axis=1), xyz)
    np.testing.assert_array_equal(np.stack([vertices[c] for c in ("red", "green", "blue")], axis=1), rgb)
    np.testing.assert_array_equal(vertices["confidence"], confidence)


def test_an_empty_cloud_is_a_valid_file(tmp_path: Path) -> None:
    vertices = read_ply(write_ply(tmp_path / "empty.ply", *_cloud(0)))
    assert len(vertices["x"]) == 0


def test_header_is_the_documented_one(tmp_path: Path) -> None:
    path = write_ply(tmp_path / "points.ply", *_cloud(3))
    header = path.read_bytes().split(b"end_header\n")[0].decode("ascii").splitlines()
    assert header == [
        "ply",
        "format binary_little_endian 1.0",
        "element vertex 3",
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
        "property uchar green",
        "property uchar blue",
        "property float confidence",
    ]
    assert path.stat().st_size == len(b"\n".join(h.encode() for h in header)) + len(b"\nend_header\n") + 3 * 19
