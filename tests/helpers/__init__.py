"""Helpers shared by test modules (imported as ``helpers``: pytest puts tests/ on the path)."""

import struct
from pathlib import Path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk of a complete PNG file (asserts it is one)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND", f"{path} is truncated"
    return struct.unpack(">II", data[16:24])
