"""Image sizes from file headers (PNG, JPEG, BMP): COCO needs width and height, and the instance has no Pillow."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

# What the trainers read as images (Ultralytics' list, less the formats no detector set here uses).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """A file whose size cannot be read from its header."""


def is_image(path: str) -> bool:
    dot = path.rfind(".")
    return dot >= 0 and path[dot:].lower() in IMAGE_SUFFIXES


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as a viewer shows it: a JPEG's EXIF rotation by 90° swaps them, as trainers do on load."""
    with path.open("rb") as f:
        head = f.read(26)
        if head.startswith(_PNG) and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
        elif head.startswith(b"\xff\xd8"):
            f.seek(2)
            width, height = _jpeg_size(f, path)
        elif head.startswith(b"BM") and len(head) >= 26:
            width, height = struct.unpack("<ii", head[18:26])
            height = abs(height)  # negative for top-down bitmaps
        else:
            raise ImageError(f"{path}: not a PNG, JPEG or BMP file")
    if width <= 0 or height <= 0:
        raise ImageError(f"{path}: header says {width}x{height}")
    return width, height


def _jpeg_size(f: BinaryIO, path: Path) -> tuple[int, int]:
    rotated = False
    while True:
        byte = f.read(1)
        if not byte:
            raise ImageError(f"{path}: JPEG ends before its frame header")
        if byte != b"\xff":
            continue
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker or marker[0] in _STANDALONE or marker[0] == 0x00:
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            raise ImageError(f"{path}: truncated JPEG")
        length = struct.unpack(">H", length_bytes)[0] - 2
        if marker[0] in _SOF:
            data = f.read(5)
            if len(data) < 5:
                raise ImageError(f"{path}: truncated JPEG frame header")
            height, width = struct.unpack(">HH", data[1:5])
            return (height, width) if rotated else (width, height)
        if marker[0] == 0xDA:  # start of scan before any frame header
            raise ImageError(f"{path}: JPEG without a frame header")
        segment = f.read(length)
        if marker[0] == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            rotated = _exif_orientation(segment[6:]) in (5, 6, 7, 8)


def _exif_orientation(tiff: bytes) -> int:
    """The EXIF orientation tag of IFD0 (1, upright, when absent or unreadable)."""
    if tiff[:2] not in (b"II", b"MM") or len(tiff) < 8:
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, _type, _n = struct.unpack(order + "HHI", entry[:8])
        if tag == _EXIF_ORIENTATION:
            return int(struct.unpack(order + "H", entry[8:10])[0])
    return 1
