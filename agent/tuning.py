"""The agent's tunable intervals: each a default the environment may override (the local stack runs faster)."""

from __future__ import annotations

import os


def seconds(name: str, default: float) -> float:
    """`$name` as seconds if it is set and not empty, else `default`."""
    value = os.environ.get(name)
    return float(value) if value else default
