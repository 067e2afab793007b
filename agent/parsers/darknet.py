"""Parse darknet's training console (AlexeyAB and pjreddie forks): iterations, avg loss, mAP@0.5 with `-map`.

Darknet's iteration numbers are already counts (1-based) and it prints mAP and per-class AP in percent.
"""

from __future__ import annotations

import re

from agent.parsers.base import Metric, Parsed
from agent.parsers.common import LogParser, fraction, number

# " 1000: 2.345, 2.567 avg loss, 0.001000 rate, 3.2 seconds, 64000 images, 12.3 hours left";
# pjreddie says "avg" without "loss", older AlexeyAB builds omit "hours left". Searched, not matched: a process
# manager may prefix every line ("0|yolo     | 10313: 0.576849, 0.677636 avg, …").
_ITERATION = re.compile(
    r"(?<![\w.])(\d+): *([^,\s]+), *([^,\s]+) avg(?: loss)?, *[^,\s]+ rate, *([^,\s]+) seconds, *\d+ images"
    r"(?:, *([^,\s]+) hours left)?"
)
# "Last accuracy mAP@0.5 = 59.75 %, best = 62.19 %" (newer builds print the IoU threshold as "0.50").
_LAST_ACCURACY = re.compile(r"Last accuracy mAP@[\d.]+ = ([^\s%]+) ?%, best = ([^\s%]+) ?%")
# "mean average precision (mAP@0.50) = 0.456700, or 45.67 %": the first number is already a fraction.
# Builds from 2018 print "(mAP)"; an evaluation at another IoU threshold ("mAP@0.25") is not mAP@0.5.
_MEAN_AP = re.compile(r"mean average precision \(mAP(?:@0?\.50?)?\) = ([^,\s]+)")
# "class_id = 0, name = person, ap = 78.90%   (TP = 1234, FP = 567)"; older builds put a tab before "ap".
_CLASS_AP = re.compile(r"class_id = \d+, name = (.*?),\s+ap = ([^\s%]+) ?%")
_PRECISION_RECALL = re.compile(r"precision = ([^,\s]+), recall = ([^,\s]+)")
_MAX_BATCHES = re.compile(r"max_batches\s*=\s*(\d+)")


class DarknetParser(LogParser):
    framework = "darknet"
    unit = "iteration"

    def __init__(self) -> None:
        super().__init__()
        self._total: int | None = None
        # What a `-map` evaluation prints before its mean AP line, attached to the Metric it ends with.
        self._class_ap: dict[str, float] = {}
        self._precision: float | None = None
        self._recall: float | None = None
        # "Last accuracy …" is repeated before every iteration line: only a changed one is news.
        self._last_accuracy: tuple[str, str] | None = None

    def _parse(self, line: str) -> list[Parsed]:
        if " avg" in line:
            m = _ITERATION.search(line)
            if m:
                return self._iteration(line, m)
        elif "mAP" in line:
            if "Last accuracy" in line:
                return self._accuracy(line)
            # "(next mAP calculation at …)" comes before every iteration: test cheaply before searching.
            if "mean average precision" in line:
                m = _MEAN_AP.search(line)
                if m:
                    return self._evaluation(number(m.group(1)))
        elif "class_id = " in line:
            m = _CLASS_AP.search(line)
            if m:
                ap = fraction(number(m.group(2)), percent=True)
                if ap is not None:
                    self._class_ap[m.group(1)] = ap
        elif "precision = " in line:
            m = _PRECISION_RECALL.search(line)
            if m:
                self._precision = fraction(number(m.group(1)))
                self._recall = fraction(number(m.group(2)))
        elif "max_batches" in line:
            m = _MAX_BATCHES.search(line)
            if m:
                self._total = int(m.group(1))
        return []

    def _iteration(self, line: str, m: re.Match[str]) -> list[Parsed]:
        current = int(m.group(1))
        hours_left = m.group(5)
        if hours_left is not None:
            # The first iteration of a run (or of a resumed one) has no pace yet and says "-1.000000 hours left".
            eta: float | None = number(hours_left) * 3600 if hours_left[0] != "-" else None
        elif self._total is not None:
            # Without "hours left", the last iteration's time × iterations to go.
            eta = number(m.group(4)) * max(self._total - current, 0)
        else:
            eta = None
        return self._progress(line, current, self._total, number(m.group(3)), eta)

    def _evaluation(self, map50: float) -> list[Parsed]:
        metric = Metric(
            self.unit,
            self._current(),
            map50=fraction(map50),
            precision=self._precision,
            recall=self._recall,
            per_class_ap50=self._class_ap,
        )
        self._class_ap, self._precision, self._recall = {}, None, None
        return [metric]

    def _accuracy(self, line: str) -> list[Parsed]:
        m = _LAST_ACCURACY.search(line)
        if not m or m.groups() == self._last_accuracy:
            return []
        self._last_accuracy = (m.group(1), m.group(2))
        last = fraction(number(m.group(1)), percent=True)
        # Darknet's own best is the one its _best.weights hold: it stands, even below an earlier run's.
        self._run.best_map50 = fraction(number(m.group(2)), percent=True)
        seen = self._run.metric
        if seen is not None and seen.map50 is not None and last is not None and abs(seen.map50 - last) < 5e-5:
            return []  # the evaluation whose "mean average precision" line was already reported
        return [Metric(self.unit, self._current(), map50=last)]
