"""Image files at the edges of what the input accepts: huge, over the pixel limit, 16 bits per channel.

Made cheaply: the huge JPEG is flat grey with one bright square (it encodes in half a second), the files
over the limit are 1-bit PNGs written chunk by chunk (a few hundred kilobytes for 400 megapixels).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HUGE_SIZE = (16000, 12000)
"""192 megapixels: PIL refuses to open it (a decompression bomb above 179 megapixels)."""
SQUARE_CENTRE = (3100, 5100)
SQUARE_SIDE = 200


def write_huge_jpeg(path: Path) -> Path:
    """A HUGE_SIZE grayscale JPEG, grey (60) with a bright (250) square of SQUARE_SIDE at SQUARE_CENTRE."""
    width, height = HUGE_SIZE
    pixels = np.full((height, width), 60, dtype=np.uint8)
    x, y, half = *SQUARE_CENTRE, SQUARE_SIDE // 2
    pixels[y - half : y + half, x - half : x + half] = 250
    Image.frombuffer("L", HUGE_SIZE, pixels, "raw", "L", 0, 1).save(path, quality=90)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bilevel_png(path: Path, width: int, height: int) -> Path:
    """A valid black 1-bit grayscale PNG of any size, its rows deflated a block at a time."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter type 0, then the packed bits
    deflate = zlib.compressobj(9)
    rows_per_block = max(1, 2**22 // len(row))
    data = b"".join(
        deflate.compress(row * min(rows_per_block, height - start)) for start in range(0, height, rows_per_block)
    )
    data += deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
"""PNG colour type per number of samples: gray, gray+alpha, RGB, RGBA."""


def write_png16(
    path: Path, values: tuple[int, ...], width: int = 64, height: int = 48, transparent: tuple[int, ...] = ()
) -> Path:
    """A PNG of 16 bits per sample, every pixel ``values``: (gray), (gray, alpha), (R, G, B) or (R, G, B, A),
    written chunk by chunk here (no decoder of ours involved), with ``transparent`` as its tRNS colour key."""
    row = b"\x00" + struct.pack(f">{len(values)}H", *values) * width  # filter type 0, then big-endian samples
    header = struct.pack(">IIBBBBB", width, height, 16, PNG_COLOUR_TYPES[len(values)], 0, 0, 0)
    key = _chunk(b"tRNS", struct.pack(f">{len(transparent)}H", *transparent)) if transparent else b""
    data = zlib.compress(row * height)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + key + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    )
    return path


def rounded_8_bit(values: tuple[int, ...]) -> np.ndarray:
    """16-bit values scaled to 8 bits, rounded to nearest (what the README promises): round(v / 257)."""
    return np.array([round(value / 257) for value in values], dtype=np.uint8)


TRUNCATION_DIFFERS = (448, 60000, 65535)
"""16-bit RGB where dropping the low byte (PIL: 1, 234, 255) differs from rounding (2, 233, 255)."""
