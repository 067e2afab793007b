"""Paths a recipe names with at most one `*`: the file they stand for is the most recently written match."""

from __future__ import annotations

from pathlib import Path


def newest(path: Path) -> Path | None:
    """`path` if it is a file; for a path with one `*`, the most recently written file it matches."""
    if "*" not in str(path):
        return path if path.is_file() else None
    parts = path.parts
    at = next(i for i, part in enumerate(parts) if "*" in part)
    matches = []
    for p in Path(*parts[:at]).glob(str(Path(*parts[at:]))):
        try:
            if p.is_file():
                matches.append((p.stat().st_mtime_ns, p))
        except OSError:
            continue  # replaced or removed between the listing and the look (a trainer rotating checkpoints)
    return max(matches, default=(0, None))[1]
