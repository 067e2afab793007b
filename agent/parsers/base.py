"""What every parser yields, and the interface the phase runner and `python -m agent parse` use.

A parser is fed one logical line at a time (the runner has already split on `\\n` and `\\r` and
stripped ANSI escapes) and returns what that line told it. Values are normalised: metrics are
fractions 0–1, `current` is 1-based, unknown values are None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

Unit = Literal["epoch", "iteration"]
ErrorKind = Literal["oom", "nan_loss", "killed", "crash"]


# Not frozen: a frozen dataclass sets each field through object.__setattr__, several times slower to
# build, and one event is built per progress line. Treat them as values all the same.
@dataclass(slots=True)
class Progress:
    unit: Unit
    current: int
    total: int | None
    loss: float | None = None
    eta_seconds: float | None = None
    kind: Literal["progress"] = "progress"


@dataclass(slots=True)
class Metric:
    unit: Unit
    current: int | None
    map50: float | None = None
    map50_95: float | None = None
    precision: float | None = None
    recall: float | None = None
    per_class_ap50: dict[str, float] = field(default_factory=dict)
    kind: Literal["metric"] = "metric"


@dataclass(slots=True)
class ErrorSeen:
    error: ErrorKind
    line: str
    kind: Literal["error"] = "error"


Parsed = Progress | Metric | ErrorSeen


def as_dict(item: Parsed) -> dict[str, Any]:
    return asdict(item)


class Parser(Protocol):
    framework: str

    def feed(self, line: str) -> list[Parsed]:
        """Everything this line says; [] for most lines. Must be fast: it runs on every output line."""
        ...

    def summary(self) -> dict[str, Any]:
        """The `--summary` object of the parse contract (shared/DESIGN.md)."""
        ...
