"""Binary little-endian PLY point clouds: x, y, z (float), red, green, blue (uchar), confidence (float).

nerfstudio reads xyz and rgb (through open3d) and ignores the extra ``confidence`` property; our
viewer reads it to filter points interactively.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vggt_sparse_ns.export.atomic import atomic_path

_PLY_TYPES = {
    "char": "i1",
    "uchar": "u1",
    "short": "<i2",
    "ushort": "<u2",
    "int": "<i4",
    "uint": "<u4",
    "float": "<f4",
    "double": "<f8",
    "int8": "i1",
    "uint8": "u1",
    "int16": "<i2",
    "uint16": "<u2",
    "int32": "<i4",
    "uint32": "<u4",
    "float32": "<f4",
    "float64": "<f8",
}
VERTEX_PROPERTIES = (
    ("x", "float"),
    ("y", "float"),
    ("z", "float"),
    ("red", "uchar"),
    ("green", "uchar"),
    ("blue", "uchar"),
    ("confidence", "float"),
)
VERTEX_DTYPE = np.dtype([(name, _PLY_TYPES[kind]) for name, kind in VERTEX_PROPERTIES])


def write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, confidence: np.ndarray) -> Path:
    """Write points [N, 3], colours [N, 3] uint8 and confidences [N] atomically."""
    if not (len(xyz) == len(rgb) == len(confidence)):
        raise ValueError(f"xyz, rgb and confidence lengths differ: {len(xyz)}, {len(rgb)}, {len(confidence)}")
    vertices = np.empty(len(xyz), dtype=VERTEX_DTYPE)
    for axis, name in enumerate("xyz"):
        vertices[name] = xyz[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = rgb[:, channel]
    vertices["confidence"] = confidence
    properties = "".join(f"property {kind} {name}\n" for name, kind in VERTEX_PROPERTIES)
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(xyz)}\n{properties}end_header\n"
    with atomic_path(path) as temporary, open(temporary, "wb") as file:
        file.write(header.encode("ascii"))
        vertices.tofile(file)
    return path


class PlyReadError(ValueError):
    """A PLY file that is missing, malformed, or of a kind this reader does not handle."""


_BYTE_ORDERS = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "="}


def _fail(path: Path, problem: str) -> PlyReadError:
    return PlyReadError(f"cannot read the point cloud {path}: {problem}")


def _parse_header(path: Path, lines: list[str]) -> tuple[str, int, list[tuple[str, str]]]:
    """(format, vertex count, [(property name, numpy type)]) of the first element, which must be ``vertex``."""
    if not lines or lines[0] != "ply":
        raise _fail(path, "not a PLY file (it must start with 'ply')")
    ply_format, vertex_count, properties, element = "", -1, [], None
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            ply_format = words[1]
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                vertex_count = int(words[2])
            elif vertex_count < 0:
                raise _fail(path, f"the first element is '{element}'; the vertex element must come first")
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list" or words[1] not in _PLY_TYPES:
                raise _fail(path, f"unsupported vertex property type in '{line}'")
            properties.append((words[2], _PLY_TYPES[words[1]].lstrip("<")))
    if ply_format not in _BYTE_ORDERS:
        raise _fail(path, f"unsupported format '{ply_format}' (expected one of {sorted(_BYTE_ORDERS)})")
    if vertex_count < 0:
        raise _fail(path, "no vertex element in the header")
    return ply_format, vertex_count, properties


def read_ply(path: Path) -> dict[str, np.ndarray]:
    """Every vertex property of a PLY point cloud (binary little/big-endian or ASCII), by name, as 1-D
    arrays of its stored type."""
    if not path.is_file():
        raise PlyReadError(f"point cloud not found: {path}")
    data = path.read_bytes()
    end = data.find(b"end_header")
    if end < 0:
        raise _fail(path, "no 'end_header' line")
    body_start = data.index(b"\n", end) + 1
    lines = data[:end].decode("ascii", errors="replace").replace("\r", "").splitlines()
    ply_format, count, properties = _parse_header(path, lines)
    dtype = np.dtype([(name, _BYTE_ORDERS[ply_format] + kind) for name, kind in properties])
    if ply_format == "ascii":
        table = np.loadtxt(data[body_start:].decode("ascii").splitlines()[:count], ndmin=2)
        if count and table.shape != (count, len(properties)):
            raise _fail(path, f"expected {count} rows of {len(properties)} values, found {table.shape}")
        return {name: table[:, column].astype(kind) for column, (name, kind) in enumerate(properties)}
    if len(data) - body_start < count * dtype.itemsize:
        raise _fail(path, f"truncated: {count} vertices need {count * dtype.itemsize} bytes")
    vertices = np.frombuffer(data, dtype=dtype, count=count, offset=body_start)
    return {name: vertices[name].astype(kind) for name, kind in properties}
