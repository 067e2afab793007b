"""The `shapes` dataset: coloured rectangles and circles on plain backgrounds, in YOLO layout.

Deterministic for a seed, dependency-free (PNG written with zlib), so the demo and the tests need no
download. Run: python -m agent.datasets.shapes --out DIR [--train 200 --val 40 --size 128 --seed 0]
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import zlib
from pathlib import Path

CLASSES = ("rectangle", "circle")


def _png(width: int, height: int, rows: list[bytearray]) -> bytes:
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def render(rng: random.Random, size: int) -> tuple[bytes, list[tuple[int, float, float, float, float]]]:
    """One image and its YOLO labels (class, cx, cy, w, h as fractions)."""
    base = [rng.randrange(30, 90) for _ in range(3)]
    rows = [bytearray(v for _ in range(size) for v in base) for _ in range(size)]
    labels = []
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(rng.randint(1, 4)):
        cls = rng.randrange(len(CLASSES))
        w = h = rng.randint(size // 6, size // 3)
        if cls == 0:
            h = rng.randint(size // 6, size // 3)
        for _try in range(20):
            x0, y0 = rng.randrange(0, size - w), rng.randrange(0, size - h)
            if all(x0 + w <= a or a + c <= x0 or y0 + h <= b or b + d <= y0 for a, b, c, d in placed):
                break
        else:
            continue
        placed.append((x0, y0, w, h))
        colour = [rng.randrange(130, 256) for _ in range(3)]
        rx, ry = w / 2, h / 2
        cx, cy = x0 + rx, y0 + ry
        for y in range(y0, y0 + h):
            row = rows[y]
            for x in range(x0, x0 + w):
                if cls == 1 and ((x + 0.5 - cx) / rx) ** 2 + ((y + 0.5 - cy) / ry) ** 2 > 1:
                    continue
                row[3 * x : 3 * x + 3] = bytes(colour)
        labels.append((cls, cx / size, cy / size, w / size, h / size))
    return _png(size, size, rows), labels


def generate(out: Path, train: int = 200, val: int = 40, size: int = 128, seed: int = 0) -> Path:
    """Write images/{train,val}, labels/{train,val} and data.yaml under `out`; returns data.yaml."""
    rng = random.Random(seed)
    for split, count in (("train", train), ("val", val)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            png, labels = render(rng, size)
            (out / "images" / split / f"{i:05d}.png").write_bytes(png)
            (out / "labels" / split / f"{i:05d}.txt").write_text(
                "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in labels)
            )
    data = out / "data.yaml"
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    data.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--val", type=int, default=40)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    data = generate(a.out, a.train, a.val, a.size, a.seed)
    print(f"shapes: {a.train} train / {a.val} val images of {a.size} px, classes {', '.join(CLASSES)} -> {data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
