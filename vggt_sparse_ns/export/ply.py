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


def read_ply(path: Path) -> dict[str, np.ndarray]:
    """The vertex properties of a binary little-endian PLY holding one scalar-only vertex element."""
    with open(path, "rb") as file:
        if file.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a PLY file")
        fields, count = [], None
        while (line := file.readline().decode("ascii").strip()) != "end_header":
            words = line.split()
            if not words:
                raise ValueError(f"{path}: PLY header ends without end_header")
            if words[0] == "format" and words[1] != "binary_little_endian":
                raise ValueError(f"{path}: only binary_little_endian PLY is supported, not {words[1]}")
            if words[0] == "element":
                if words[1] != "vertex" or count is not None:
                    raise ValueError(f"{path}: only a single vertex element is supported")
                count = int(words[2])
            if words[0] == "property":
                if words[1] == "list":
                    raise ValueError(f"{path}: list properties are not supported")
                fields.append((words[2], _PLY_TYPES[words[1]]))
        vertices = np.fromfile(file, dtype=np.dtype(fields), count=count or 0)
    return {name: vertices[name] for name in vertices.dtype.names}
