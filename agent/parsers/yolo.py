"""Parse the YOLOv5-family consoles and results files: YOLOv5, Scaled-YOLOv4 and Ultralytics YOLOv8/11.

They share one layout: a header naming the columns, an epoch row redrawn by the progress bar, after
each epoch an `all` row (images, instances, P, R, mAP50, mAP50-95), per-class rows in the final
validation, and results.txt/results.csv rows. They differ in where epochs start (YOLOv5 prints 0-based).
"""

from __future__ import annotations

import dataclasses
import re
from math import isclose, isfinite, nan

from agent.parsers.base import Metric, Parsed, Progress
from agent.parsers.common import SCALED_BELOW_SQUARED, TO_INTEGER, LogParser, fraction, number, round_to

# An epoch row ("   29/99 …", groups 1 and 2) or a validation's `all` row, in one match. Possessive: what follows
# the indent and the digits is never a space or a digit, and a plain `\s*` would give back the indent one character
# at a time, trying the rest at each, before failing on any other indented line (a table row, a bar's description).
_ROW = re.compile(r"\s*+(?:(\d++)/(\d++)|all)\s")
_LOSS_NAMES = frozenset(("box", "obj", "cls", "giou", "loss", "total"))
# results.txt (YOLOv5 ≤ v5, Scaled-YOLOv4): epoch/total, gpu_mem, box, obj, cls, total, targets, img_size,
# P, R, mAP@.5, mAP@.5:.95, val box, val obj, val cls.
_RESULTS_TXT_WIDTH = 15
# results.csv names (YOLOv5 first, then Ultralytics; Ultralytics' box metrics carry "(B)", masks "(M)").
_CSV_PRECISION = ("metrics/precision", "metrics/precision(B)")
_CSV_RECALL = ("metrics/recall", "metrics/recall(B)")
_CSV_MAP50 = ("metrics/mAP_0.5", "metrics/mAP50(B)")
_CSV_MAP50_95 = ("metrics/mAP_0.5:0.95", "metrics/mAP50-95(B)")


def _seconds(text: str) -> float:
    """Seconds from "3.1s" or "3.1" (s), "1:17" (m:s) or "1:02:03" (h:m:s); ValueError for anything else."""
    if ":" not in text:
        return float(text[:-1] if text[-1:] == "s" else text)
    parts = text.split(":")
    if len(parts) == 2:
        return int(parts[0]) * 60 + float(parts[1])
    total = 0.0
    for part in parts:
        total = total * 60 + float(part)
    return total


_TIMES_CACHED = 4096
_times_cache: dict[str, tuple[float, float | None] | None] = {}
# What `_times_cache.get` answers for times not seen yet: a tuple no one else holds.
_UNSEEN: tuple[float, float | None] = (nan, nan)


def _times(text: str) -> tuple[float, float | None] | None:
    """(elapsed, remaining) from a bar's "01:17<00:03" or "1.5s<2.4s"; remaining None when the bar shows none.

    Cached: a bar redraws many times a second and the times change once a second. In a dict emptied when full
    rather than by functools.lru_cache: `_epoch_row` looks there itself, at half the cost of a call.
    """
    pair = _times_cache.get(text, _UNSEEN)
    if pair is not _UNSEEN:
        return pair
    elapsed_text, less, remaining_text = text.partition("<")
    try:
        pair = _seconds(elapsed_text), _seconds(remaining_text) if less else None
    except ValueError:
        pair = None  # "?" before the first step, or a bar cut short: an odd bar costs the ETA, not the progress
    if len(_times_cache) >= _TIMES_CACHED:
        _times_cache.clear()
    _times_cache[text] = pair
    return pair


def _index(names: list[str], wanted: tuple[str, ...]) -> int | None:
    for name in wanted:
        if name in names:
            return names.index(name)
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class _CsvLayout:
    """Where the numbers a summary needs sit in a results.csv row."""

    width: int
    epoch: int
    losses: tuple[int, ...]
    # precision, recall, mAP50, mAP50-95
    metrics: tuple[int | None, int | None, int | None, int | None]

    @classmethod
    def parse(cls, header: str) -> _CsvLayout | None:
        names = [name.strip() for name in header.split(",")]
        if "epoch" not in names:
            return None
        return cls(
            width=len(names),
            epoch=names.index("epoch"),
            losses=tuple(i for i, n in enumerate(names) if n.startswith("train/") and n.endswith("loss")),
            metrics=(
                _index(names, _CSV_PRECISION),
                _index(names, _CSV_RECALL),
                _index(names, _CSV_MAP50),
                _index(names, _CSV_MAP50_95),
            ),
        )


class YoloFamilyParser(LogParser):
    """The shared parser; subclasses name the framework and say where its epochs start."""

    unit = "epoch"
    # Added to a printed epoch (and total) to make it 1-based: YOLOv5's "29/99" is epoch 30 of 100.
    epoch_offset = 1

    def __init__(self) -> None:
        super().__init__()
        # From the latest header: the row's width, its loss columns, and a "total" loss column if it has one.
        self._width = 0
        self._loss_cols: tuple[int, ...] = ()
        self._total_col: int | None = None
        self._total: int | None = None
        # The latest line `_header` read (the same header is printed before every epoch: read it once).
        self._header_line: str | None = None
        # How the latest epoch row started ("   29/99 ") and its (current, total): the rows of one epoch all start
        # so, and `startswith` is several times cheaper than matching `_ROW`. Until the first row, a pair `_ROW`
        # itself would give (any line starting "0/0 " is such a row).
        self._row_prefix = "0/0 "
        self._row_epoch = (self.epoch_offset, self.epoch_offset)
        self._csv: _CsvLayout | None = None
        # After an `all` row: how many numbers end each per-class row (0 when not in such a table),
        # the `all` metric they belong to, and the AP50 collected so far.
        self._row_width = 0
        self._all: Metric | None = None
        self._class_ap: dict[str, float] = {}

    def _parse(self, line: str) -> list[Parsed]:
        if self._row_width:
            return self._table_row(line)
        if self._csv is not None and "," in line:
            rows = self._csv_row(line)  # a results.csv: the lines after its header are its rows
            if rows is not None:
                return rows
        if line.startswith(self._row_prefix):  # `_row`'s first test, here to spare a call on every bar redraw
            current, total = self._row_epoch
            return self._epoch_row(line, current, total)
        return self._new_row(line)

    def _row(self, line: str) -> list[Parsed]:
        """An epoch row, an `all` row, or any other line."""
        if line.startswith(self._row_prefix):
            # Starts as the latest epoch row did, so `_ROW` would match it with the same numbers.
            current, total = self._row_epoch
            return self._epoch_row(line, current, total)
        return self._new_row(line)

    def _new_row(self, line: str) -> list[Parsed]:
        """`_row` for a line that does not start as the latest epoch row did."""
        m = _ROW.match(line)
        if m is None:
            return self._other(line)
        epoch = m.group(1)
        if epoch is None:
            return self._all_row(line)
        offset = self.epoch_offset
        current, total = int(epoch) + offset, int(m.group(2)) + offset
        self._row_prefix, self._row_epoch = m.group(), (current, total)
        return self._epoch_row(line, current, total)

    def _table_row(self, line: str) -> list[Parsed]:
        """A line after an `all` row: a per-class row, or whatever ends the table."""
        if self._class_row(line):
            return []
        ended = self._end_table()
        try:
            return ended + self._row(line)
        except ValueError:
            return ended  # the line is unreadable; the table it closed is not

    def _other(self, line: str) -> list[Parsed]:
        # One-character tests first ("h": "Epoch" and "epochs completed in", "-": "non-finite loss"): they are
        # several times cheaper than the substring tests, and most lines fail them.
        if "h" in line:
            if "Epoch" in line:
                if line != self._header_line:
                    self._header(line)
                    self._header_line = line
                return []
            if "epochs completed in" in line:
                return self._finished()
        if self._csv is None and "metrics/" in line and "," in line:
            self._csv = _CsvLayout.parse(line)
        elif "-" in line and "non-finite loss" in line:
            # YOLOv5 before v6 stops with "WARNING: non-finite loss, ending training".
            return self._nan_reported(line)
        return []

    def _finished(self) -> list[Parsed]:
        """After "300 epochs completed in 4.797 hours." (the last epoch, or an early stop) nothing is left to wait for."""
        p = self._run.progress
        if p is None or p.eta_seconds == 0.0:
            return []
        return [Progress(p.unit, p.current, p.total, p.loss, 0.0)]

    def _header(self, line: str) -> None:
        names = line.split()
        if len(names) < 3 or names[0] != "Epoch":
            return
        lowered = [n.lower() for n in names]
        self._width = len(names)
        self._loss_cols = tuple(i for i, n in enumerate(lowered) if n in _LOSS_NAMES or n.endswith("_loss"))
        self._total_col = lowered.index("total") if "total" in lowered else None

    def _epoch_row(self, line: str, current: int, total: int) -> list[Parsed]:
        """A console row (a progress bar's description, "…  640: 100%|…") or a results.txt row (no bar).

        The progress is the epoch, the loss (the header's loss columns summed, or its total column) and the ETA:
        what is left of this epoch plus the epochs to go at this epoch's pace, read from the bar, which is
        tqdm's "100%|███| 49/49 [01:17<00:00,  1.59s/it]" or Ultralytics' own "38% ━━━╸──── 5/13 3.4it/s 1.5s<2.4s"
        ("0/13  0.7s" before a pace, no "<…" once done). Runs once per bar redraw, so written for speed: one
        function (the ETA and round_to's arithmetic inline), the bar sliced from the right (a regex scan over the
        block characters would cost more than the rest of the row), the steps read only when the times show no
        remaining part.
        """
        width = self._width
        loss: float | None
        # The hot path: the header said where the losses are and the row fits it.
        if width and len(cols := line.split(None, width)) > width and cols[width - 1][-1] == ":":
            total_col = self._total_col
            if total_col is not None:
                loss = float(cols[total_col])
            else:
                loss_cols = self._loss_cols
                if len(loss_cols) == 3:  # box, obj, cls or box, cls, dfl: the loop below, unrolled
                    a, b, c = loss_cols
                    loss = 0.0 + float(cols[a]) + float(cols[b]) + float(cols[c])
                else:
                    loss = 0.0
                    for i in loss_cols:
                        loss += float(cols[i])
                # round_to(loss, 8, 1e8): the sum of 4-digit columns, without float noise.
                p = loss * 1e8
                q = p + TO_INTEGER - TO_INTEGER
                d = p - q
                loss = q / 1e8 if q and d * d < 0.1 and p * p < SCALED_BELOW_SQUARED else round(loss, 8)
            bar = cols[width]
        else:
            sep = line.find(": ")
            if sep < 0:
                return self._results_row(line, current, total)
            loss = _rounded(_guess_loss(line[:sep].split()))
            bar = line[sep + 2 :]
        self._total = total

        eta: float | None = None
        # tqdm's times are between the last "[" (not the first character) and the next ","; Ultralytics' are the
        # last word. `in` and (r)partition: several times cheaper than rfind and find, which parse their arguments.
        if "[" in bar and (split_bar := bar.rpartition("["))[0]:
            times = split_bar[2].partition(",")[0]
        else:
            times = bar.rpartition(" ")[2]
        pair = _times_cache.get(times, _UNSEEN)  # `_times`' own first step, here to spare a call
        if pair is _UNSEEN:
            pair = _times(times)
        if pair is not None:
            elapsed, remaining = pair
            if remaining is None:
                # No "<…": Ultralytics before the first step ("0/13  0.7s") or once the epoch is done ("13/13 … 14.8s").
                steps = bar.rsplit(None, 3)
                if len(steps) >= 3:
                    done, slash, count = (steps[-3] if "it" in steps[-2] else steps[-2]).partition("/")
                    if slash and done == count:
                        remaining = 0.0
            if remaining is not None:
                epochs_left = total - current
                eta = remaining + (elapsed + remaining) * (epochs_left if epochs_left > 0 else 0)
                # Rounding leaves a whole number as it is (tqdm's "01:17<00:03" times are whole seconds): test
                # first. Then round_to(eta, 1, 10.0).
                if not eta.is_integer():
                    p = eta * 10.0
                    q = p + TO_INTEGER - TO_INTEGER
                    d = p - q
                    eta = q / 10.0 if q and d * d < 0.1 and p * p < SCALED_BELOW_SQUARED else round(eta, 1)

        if loss is not None and not isfinite(loss):
            return self._progress(line, current, total, loss, eta)
        # `_progress` with a finite loss, inlined.
        self._loss_was_nan = False
        return [Progress(self.unit, current, total, loss, eta)]

    def _results_row(self, line: str, current: int, total: int) -> list[Parsed]:
        cols = line.split()
        if len(cols) != _RESULTS_TXT_WIDTH or cols[1][-1:] not in ("G", "M"):
            return []
        self._total = total
        # Written by Python: float() reads its "nan" as it is.
        p, r, map50, map50_95 = map(float, cols[8:12])
        out = self._progress(line, current, total, float(cols[5]))
        out.append(self._metric(current, p, r, map50, map50_95))
        return out

    def _csv_row(self, line: str) -> list[Parsed] | None:
        """A results.csv row; None if the line does not have the file's columns."""
        csv = self._csv
        values = line.split(",")
        if csv is None or len(values) != csv.width:
            return None
        # Written by Python: float() reads its padding and "nan" as they are.
        current = int(float(values[csv.epoch])) + self.epoch_offset
        loss: float | None = None
        if csv.losses:
            loss = 0.0
            for i in csv.losses:
                loss += float(values[i])
            loss = round(loss, 8)
        out = self._progress(line, current, self._total, loss)
        i_p, i_r, i_50, i_95 = csv.metrics
        out.append(
            self._metric(
                current,
                float(values[i_p]) if i_p is not None else nan,
                float(values[i_r]) if i_r is not None else nan,
                float(values[i_50]) if i_50 is not None else nan,
                float(values[i_95]) if i_95 is not None else nan,
            )
        )
        return out

    def _all_row(self, line: str) -> list[Parsed]:
        cols = line.split()
        if len(cols) < 7:
            return []
        # Segmentation and pose rows carry box metrics first, then mask/pose ones.
        _images, _instances, p, r, map50, map50_95 = map(float, cols[1:7])
        metric = self._metric(self._current(), p, r, map50, map50_95)
        self._row_width, self._all, self._class_ap = len(cols) - 1, metric, {}
        return [metric]

    def _class_row(self, line: str) -> bool:
        """Collect a per-class row ("  traffic light  28  46  0.978  0.959  0.994  0.869"); False if it is not one."""
        cols = line.split()
        width = self._row_width
        if len(cols) <= width:
            return False
        try:
            numbers = [number(c) for c in cols[-width:]]
        except ValueError:
            return False
        ap50 = fraction(numbers[4])
        if ap50 is not None:
            self._class_ap[" ".join(cols[:-width])] = ap50
        return True

    def _end_table(self) -> list[Parsed]:
        """The `all` metric again, now with the per-class AP50 its table listed."""
        out: list[Parsed] = []
        if self._class_ap and self._all is not None:
            out.append(dataclasses.replace(self._all, per_class_ap50=self._class_ap))
        self._row_width, self._all, self._class_ap = 0, None, {}
        return out

    def _metric(self, current: int | None, p: float, r: float, map50: float, map50_95: float) -> Metric:
        # YOLO metrics are printed as fractions already; NaN (nothing detected yet) is unknown.
        # Positional (unit, current, map50, map50_95, precision, recall): cheaper to call than with keywords.
        return Metric(
            self.unit,
            current,
            map50 if isfinite(map50) else None,
            map50_95 if isfinite(map50_95) else None,
            p if isfinite(p) else None,
            r if isfinite(r) else None,
        )


def _guess_loss(cols: list[str]) -> float | None:
    """The loss of a row seen without its header: the columns between gpu_mem and (instances, size).

    Old YOLOv5 and Scaled-YOLOv4 add a total after box/obj/cls; a fourth column that is their sum is it.
    """
    values = [number(c) for c in cols[2:-2]]
    if not values:
        return None
    if len(values) == 4 and isclose(values[3], sum(values[:3]), rel_tol=0.02, abs_tol=1e-4):
        return values[3]
    return sum(values)


def _rounded(loss: float | None) -> float | None:
    # The sum of 4-digit columns, without float noise (0.008668 + 0.002224 → 0.010892).
    return round_to(loss, 8, 1e8) if loss is not None else None


class Yolov5Parser(YoloFamilyParser):
    framework = "yolov5"
    epoch_offset = 1


class ScaledYolov4Parser(YoloFamilyParser):
    framework = "scaled-yolov4"
    epoch_offset = 1


class UltralyticsParser(YoloFamilyParser):
    """Ultralytics YOLOv8/YOLO11 print 1-based epochs ("5/30" is epoch 5 of 30)."""

    framework = "ultralytics"
    epoch_offset = 0
