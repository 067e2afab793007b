"""Parse detectron2's training log and metrics.json: iterations, total_loss, ETA and the COCO bbox AP.

detectron2 counts iterations from 0 ("iter: 299" is the 300th) and prints AP in percent.
"""

from __future__ import annotations

import math
import re
from math import isfinite

from agent.parsers.base import Metric, Parsed, Progress
from agent.parsers.common import LogParser, fraction, number

# The common line in one search: "eta: 0:05:22  iter: 19  total_loss: 1.986  loss_cls: …" (eta may be "N/A");
# lines that order their fields otherwise fall back to one search per field.
_ITER_LINE = re.compile(r"(?:eta: (?:(?:(\d+) days?, )?(\d+):(\d+):(\d+)|N/A)\s+)?iter: (\d+)\s+total_loss: (\S+)")
_ITER = re.compile(r"iter: (\d+)")
_TOTAL_LOSS = re.compile(r"total_loss: (\S+)")
# str(timedelta): "0:05:22", "1 day, 2:03:04".
_ETA = re.compile(r"eta: (?:(\d+) days?, )?(\d+):(\d+):(\d+)")
# The printed config ("  MAX_ITER: 300"), command-line opts ("'SOLVER.MAX_ITER', '300'"), LazyConfig ("max_iter=300").
_MAX_ITER = re.compile(r"(?:MAX_ITER|max_iter)\W{0,4}(\d+)")
# int() of the hours, minutes and seconds of an ETA ("0:05:22"), by lookup: a third of the cost of int().
_SIXTY = {str(i): i for i in range(60)} | {f"{i:02d}": i for i in range(10)}
_EVALUATION = re.compile(r"Evaluation results for (\w+)")
# The metrics.json fields a summary needs, read without decoding the line: the lines are long (every loss and
# counter of the step) and decoding them all costs five times as much. Values are numbers, NaN or Infinity.
_JSON_FIELD = re.compile(r'"(iteration|total_loss|eta_seconds|bbox/AP50|bbox/AP)": ([^,}]+)')


def _iter_line_start(line: str) -> int:
    """Where `_ITER_LINE.search` may start in a line with "iter: " and find the same match as from the start.

    The pattern begins with an optional group, so a search from the start tries it at every character before the
    iteration (the logger's timestamp and name), which costs three times the search from here. A match starts at
    the first "iter: " or at an "eta: " before it, whose time, spaces and "iter: " hold no further "eta: ": so
    only the last "eta: " before the first "iter: " can start one.
    """
    first_iter = line.find("iter: ")
    eta = line.rfind("eta: ", 0, first_iter)
    return eta if eta >= 0 else first_iter


class Detectron2Parser(LogParser):
    framework = "detectron2"
    unit = "iteration"

    def __init__(self) -> None:
        super().__init__()
        self._total: int | None = None
        # Which task the next AP table belongs to (its bbox table is the one we want, not segm/keypoints),
        # and the header of a table whose value row comes next.
        self._task: str | None = None
        self._table: list[str] | None = None
        # The copypaste lines: "Task: bbox", then the names, then the values.
        self._copypaste_task: str | None = None
        self._copypaste_names: list[str] | None = None

    def _parse(self, line: str) -> list[Parsed]:
        if "iter: " in line:
            return self._iteration(line)
        if line[:1] == "|":
            return self._table_row(line)
        if "copypaste: " in line:
            return self._copypaste(line.split("copypaste: ", 1)[1].strip())
        if line[:1] == "{":
            return self._metrics_json(line)
        if "Evaluation results for " in line:
            m = _EVALUATION.search(line)
            self._task = m.group(1) if m else None
        elif "MAX_ITER" in line or "max_iter" in line:
            m = _MAX_ITER.search(line)
            if m:
                self._total = int(m.group(1))
        elif "Loss became infinite or NaN" in line:
            return self._nan_reported(line)
        return []

    def _iteration(self, line: str) -> list[Parsed]:
        m = _ITER_LINE.search(line, _iter_line_start(line))
        if m:
            days, hours, minutes, seconds, iteration, loss = m.groups()
            eta = None
            if hours is not None:
                try:
                    h, mi, sec = _SIXTY[hours], _SIXTY[minutes], _SIXTY[seconds]
                except KeyError:
                    h, mi, sec = int(hours), int(minutes), int(seconds)
                eta = float((((int(days) if days else 0) * 24 + h) * 60 + mi) * 60 + sec)
            value = number(loss)
            if not isfinite(value):
                return self._progress(line, int(iteration) + 1, self._total, value, eta)
            # `_progress` with a finite loss, inlined: this runs on every iteration line.
            self._loss_was_nan = False
            return [Progress(self.unit, int(iteration) + 1, self._total, value, eta)]
        m = _ITER.search(line)
        if not m:
            return []
        loss_m = _TOTAL_LOSS.search(line)
        eta_m = _ETA.search(line)
        eta = None
        if eta_m:
            d, h, mi, sec = (int(g) if g else 0 for g in eta_m.groups())
            eta = float(((d * 24 + h) * 60 + mi) * 60 + sec)
        return self._progress(line, int(m.group(1)) + 1, self._total, number(loss_m.group(1)) if loss_m else None, eta)

    def _table_row(self, line: str) -> list[Parsed]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if self._table is None:
            if "AP" in cells and "AP50" in cells:
                self._table = cells
            return []
        if cells and cells[0] and not cells[0].strip(":-"):
            return []  # the |:------:| rule under the header
        names, self._table = self._table, None
        task, self._task = self._task, None
        if task not in (None, "bbox"):
            return []
        values = dict(zip(names, cells, strict=False))
        return self._ap_metric(number(values["AP"]), number(values["AP50"]))

    def _copypaste(self, text: str) -> list[Parsed]:
        if text.startswith("Task: "):
            self._copypaste_task, self._copypaste_names = text[6:].strip(), None
            return []
        if self._copypaste_task != "bbox":
            return []
        fields = text.split(",")
        if self._copypaste_names is None:
            self._copypaste_names = fields
            return []
        values = dict(zip(self._copypaste_names, fields, strict=False))
        self._copypaste_task = self._copypaste_names = None
        if "AP" not in values or "AP50" not in values:
            return []
        return self._ap_metric(number(values["AP"]), number(values["AP50"]))

    def _metrics_json(self, line: str) -> list[Parsed]:
        fields = dict(_JSON_FIELD.findall(line))
        if "iteration" not in fields:
            return []
        iteration = int(fields["iteration"])
        current = iteration + 1
        out: list[Parsed] = []
        loss = fields.get("total_loss")
        if loss is not None:
            eta = fields.get("eta_seconds")
            out += self._progress(line, current, self._total, float(loss), float(eta) if eta is not None else None)
        elif self._current() == iteration:
            # The evaluation after the last step is written with the step count itself ("iteration": 300
            # after iteration 299's losses), not with the 0-based index.
            current = iteration
        ap50 = fields.get("bbox/AP50")
        if ap50 is not None:
            ap = fields.get("bbox/AP")
            out += self._ap_metric(float(ap) if ap is not None else math.nan, float(ap50), current)
        return out

    def _ap_metric(self, ap: float, ap50: float, current: int | None = None) -> list[Parsed]:
        metric = Metric(
            self.unit,
            current if current is not None else self._current(),
            map50=fraction(ap50, percent=True),
            map50_95=fraction(ap, percent=True),
        )
        seen = self._run.metric
        # The table and the copypaste lines report one evaluation twice (3 and 4 decimals).
        if seen is not None and seen.current == metric.current and _close(seen, metric):
            return []
        return [metric]


def _close(a: Metric, b: Metric) -> bool:
    return _near(a.map50, b.map50) and _near(a.map50_95, b.map50_95)


def _near(x: float | None, y: float | None) -> bool:
    if x is None or y is None:
        return x is y
    return abs(x - y) < 1e-5
