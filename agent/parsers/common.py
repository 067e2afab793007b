"""What every framework parser shares: the run record behind `summary()` and the feed loop around `_parse`.

A framework parser subclasses `LogParser` and implements `_parse(line)`; errors every framework shows
(OOM, killed, tracebacks) are found by the `ErrorWatch` the base class runs on each line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from agent.parsers.base import ErrorSeen, Metric, Parsed, Progress, Unit
from agent.parsers.errors import ErrorWatch, may_show_failure


def number(token: str) -> float:
    """A float as frameworks print it, NaN spellings included (C's `-nan`, MSVC's `-nan(ind)`)."""
    try:
        return float(token)
    except ValueError:
        if "nan" in token.lower():
            return math.nan
        raise


def fraction(value: float, percent: bool = False) -> float | None:
    """A metric as a fraction 0–1, or None when the framework printed NaN/inf (JSON cannot carry them)."""
    if not math.isfinite(value):
        return None
    # Rounding drops float noise from the division (57.65 / 100 → 0.5765, not 0.5765000000000001).
    return round(value / 100, 8) if percent else value


# Adding 1.5 * 2**52 to a float of magnitude below 2**51 leaves no bits below the units: subtracting it again
# gives the float rounded to an integer, in two float operations.
TO_INTEGER = 6755399441055744.0
# round_to's bound on the scaled value, squared (p * p < 2**100 holds only for |p| < 2**50, and costs fewer
# bytecodes than a chained comparison; so does d * d < 0.1 for |d| < 0.316).
SCALED_BELOW_SQUARED = 2.0**100


def round_to(x: float, ndigits: int, scale: float) -> float:
    """round(x, ndigits), where scale is 10.0 ** ndigits; several times cheaper where float arithmetic is sure to agree.

    round() writes x as a decimal string and reads it back: it returns the float nearest to x·10**ndigits rounded
    to an integer q, times 10**-ndigits. Below 2**50 the float product p = x * scale is within 1/8 of the exact
    one; if p is within 0.316 of the integer q it rounds to, the exact product is within 0.45 of q, so q is round()'s
    integer, and q / scale (a correctly rounded division by an exact power of ten) is round()'s float. Near a tie,
    at zero (round() keeps the sign of -0.0), for huge values, NaN and infinities, round() itself decides.
    """
    p = x * scale
    q = p + TO_INTEGER - TO_INTEGER
    d = p - q
    if q and d * d < 0.1 and p * p < SCALED_BELOW_SQUARED:
        return q / scale
    return round(x, ndigits)


class RunRecord:
    """Latest progress, latest metrics, best mAP and every error of one run: the `--summary` object."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.metric: Metric | None = None
        self.best_map50: float | None = None
        self.best_map50_95: float | None = None
        self.errors: list[ErrorSeen] = []

    def add(self, items: Iterable[Parsed]) -> None:
        for item in items:
            if isinstance(item, Progress):
                self.progress = item
            elif isinstance(item, Metric):
                self.metric = item
                if item.map50 is not None and (self.best_map50 is None or item.map50 > self.best_map50):
                    self.best_map50 = item.map50
                if item.map50_95 is not None and (self.best_map50_95 is None or item.map50_95 > self.best_map50_95):
                    self.best_map50_95 = item.map50_95
            else:
                self.errors.append(item)

    def summary(self, framework: str | None, unit: Unit | None, pending: ErrorSeen | None) -> dict[str, Any]:
        p, m = self.progress, self.metric
        errors = [*self.errors, pending] if pending else self.errors
        return {
            "framework": framework,
            "progress": {
                "unit": p.unit if p else unit,
                "current": p.current if p else None,
                "total": p.total if p else None,
                "loss": p.loss if p else None,
                "eta_seconds": p.eta_seconds if p else None,
            },
            "metrics": {
                "map50": m.map50 if m else None,
                "map50_95": m.map50_95 if m else None,
                "precision": m.precision if m else None,
                "recall": m.recall if m else None,
                "per_class_ap50": dict(m.per_class_ap50) if m else {},
            },
            "best": {"map50": self.best_map50, "map50_95": self.best_map50_95},
            "errors": [{"kind": e.error, "line": e.line} for e in errors],
        }


class LogParser:
    """Base of the framework parsers: runs `_parse` and the error watch on each line and records the results."""

    framework: str = ""
    unit: Unit = "iteration"

    def __init__(self) -> None:
        self._watch = ErrorWatch()
        self._run = RunRecord()
        self._loss_was_nan = False

    def feed(self, line: str) -> list[Parsed]:
        # This runs on every line: _parse_safely, ErrorWatch.check and, for the usual single Progress, RunRecord.add are inlined.
        try:
            out = self._parse(line)
        except ValueError:
            out = []
        watch = self._watch
        if watch._state or watch._native_crash or may_show_failure(line):
            watch._check(line, out)
        if out:
            if len(out) == 1 and type(out[0]) is Progress:
                self._run.progress = out[0]
            else:
                self._run.add(out)
        return out

    def summary(self) -> dict[str, Any]:
        return self._run.summary(self.framework, self.unit, self._watch.pending())

    def take_over(self, watch: ErrorWatch, errors: list[ErrorSeen], held: Iterable[str]) -> list[Parsed]:
        """Continue where auto-detection stopped: keep its error watch and errors, parse the lines it held back."""
        self._watch = watch
        self._run.errors.extend(errors)
        out = [item for line in held for item in self._parse_safely(line)]
        self._run.add(out)
        return out

    def _parse(self, line: str) -> list[Parsed]:
        """Framework-specific events of one line; a new list each call (callers may append to it)."""
        raise NotImplementedError

    def _parse_safely(self, line: str) -> list[Parsed]:
        try:
            return self._parse(line)
        except ValueError:
            return []  # a line shaped like a known one but with unreadable numbers says nothing

    def _progress(
        self, line: str, current: int, total: int | None, loss: float | None, eta: float | None = None
    ) -> list[Parsed]:
        """A Progress event, plus nan_loss when the loss has just turned NaN or infinite (once per such stretch)."""
        if loss is not None and not math.isfinite(loss):
            out: list[Parsed] = [Progress(self.unit, current, total, None, eta)]
            if not self._loss_was_nan:
                out.append(ErrorSeen("nan_loss", line.strip()))
            self._loss_was_nan = True
            return out
        self._loss_was_nan = False
        return [Progress(self.unit, current, total, loss, eta)]

    def _nan_reported(self, line: str) -> list[Parsed]:
        """A framework's own "loss is NaN" message: report it unless the NaN loss was already reported."""
        if self._loss_was_nan:
            return []
        self._loss_was_nan = True
        return [ErrorSeen("nan_loss", line.strip())]

    def _current(self) -> int | None:
        """The step the latest progress reached: what a metric printed now belongs to."""
        p = self._run.progress
        return p.current if p else None
