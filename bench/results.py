"""What every benchmark reports: figures with their target and the baseline measured beside them in the same run.

A benchmark module builds `Result`s (`at_most`, `at_least`) and calls `publish`: the figures print as a table and,
when `make bench` runs it (BENCH_RESULTS names a file), are appended there as JSON lines; `python -m bench` gathers
them into bench/results.json:

    {"results": [{"name", "value", "unit", "target", "baseline", "meets"}, ...], "faults": [...]}

`target` reads as a condition on `value` ("<= 10", ">= 0.98"); `baseline` is what the figure is compared with,
measured in the same run (these machines are noisy, so ratios against a baseline say more than absolute times),
with its unit, or null where the figure is a count with nothing to compare it with.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

RESULTS_ENV = "BENCH_RESULTS"


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    target: str
    baseline: str | None
    meets: bool

    def row(self) -> dict[str, Any]:
        return asdict(self)


def _number(value: float) -> float:
    return round(value, 3) if abs(value) < 100 else round(value, 1)


def at_most(name: str, value: float, unit: str, limit: float, baseline: str | None = None) -> Result:
    return Result(name, _number(value), unit, f"<= {limit:g}", baseline, value <= limit)


def at_least(name: str, value: float, unit: str, limit: float, baseline: str | None = None) -> Result:
    return Result(name, _number(value), unit, f">= {limit:g}", baseline, value >= limit)


def table(results: list[Result]) -> str:
    head = ("figure", "value", "unit", "target", "baseline (same run)", "")
    rows = [
        (r.name, f"{r.value:g}", r.unit, r.target, r.baseline or "-", "ok" if r.meets else "MISSED") for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in (head, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def publish(results: list[Result], out: TextIO | None = None, **extra: list[dict[str, Any]]) -> int:
    """Print the table, append the figures (and any extra sections, e.g. `faults=`) where `make bench` gathers them;
    0 when every target is met, else 1."""
    print(table(results), file=out or sys.stdout, flush=True)
    where = os.environ.get(RESULTS_ENV)
    if where:
        with Path(where).open("a", encoding="utf-8") as f:
            for r in results:
                f.write(json.dumps({"result": r.row()}) + "\n")
            for section, rows in extra.items():
                for row in rows:
                    f.write(json.dumps({section: row}) + "\n")
    return 0 if all(r.meets for r in results) else 1


def gather(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The lines the benchmarks appended, as bench/results.json holds them."""
    out: dict[str, list[dict[str, Any]]] = {"results": []}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        ((section, row),) = json.loads(line).items()
        out.setdefault("results" if section == "result" else section, []).append(row)
    return out
