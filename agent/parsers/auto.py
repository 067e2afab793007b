"""Recognise the framework from the first lines that give it away, then hand the log to its parser.

Lines seen before the decision are held and replayed into the chosen parser, so a config printed
before the first iteration still counts; errors among them are reported at once, not held.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any

from agent.parsers.base import Parsed
from agent.parsers.common import LogParser, RunRecord
from agent.parsers.darknet import DarknetParser
from agent.parsers.detectron2 import Detectron2Parser
from agent.parsers.errors import ErrorWatch
from agent.parsers.yolo import ScaledYolov4Parser, UltralyticsParser, Yolov5Parser

# Enough for the banner, config dump and model summary frameworks print before training starts.
_HOLD_LINES = 5000
# Darknet's iteration and evaluation lines, and what a crashing build prints before any of them
# ("CUDA status Error: file: ./src/dark_cuda.c …", "darknet: ./src/utils.c:331: error: Assertion …").
_DARKNET = ("avg loss", "mAP@0.5", "next mAP calculation", "hours left", "CUDA status Error: file: ", "darknet: ./src/")
_ULTRALYTICS_BANNER = re.compile(r"Ultralytics (?:YOLOv)?\d+\.\d+\.\d+")
# YOLOv5 ≥ 6.1 names its model summary after the model ("YOLOv5s summary: 157 layers, …").
_YOLOV5_SUMMARY = re.compile(r"YOLOv5\w* summary:")
_D2_LOGGER = re.compile(r"(?:^|[\s\[])d2\.[a-z]")
# A results.txt row: "288/299  11.9G  0.03276 …" and 13 more numbers, no progress bar.
_RESULTS_TXT_ROW = re.compile(r"\s*\d+/\d+\s+[\d.]+[GM](?:\s+[-+\w.]+){13}\s*$")
# Scaled-YOLOv4's own model configs, as its train.py echoes them in its arguments.
_SCALED_YOLOV4_CFG = re.compile(r"yolov4-(?:p[567]|csp)")


def detect(line: str) -> type[LogParser] | None:
    """The parser class this line points to, or None if it could come from any framework."""
    if any(marker in line for marker in _DARKNET) or (" avg, " in line and " rate, " in line):
        return DarknetParser
    if _D2_LOGGER.search(line) or ("iter: " in line and "total_loss: " in line):
        return Detectron2Parser
    if line[:1] == "{" and '"iteration"' in line:
        return Detectron2Parser  # a metrics.json line
    if "YOLOv5 🚀" in line or "YOLOv5 v" in line or _YOLOV5_SUMMARY.search(line):
        return Yolov5Parser
    if _ULTRALYTICS_BANNER.search(line):
        return UltralyticsParser
    if "Epoch" in line or "train/box_loss" in line:
        found = _from_columns(line.replace(",", " ").split())
        if found is not None:
            return found
    if "Images" in line and "Class" in line:
        return _from_validation_header(line)
    if _RESULTS_TXT_ROW.match(line):
        return ScaledYolov4Parser
    if "Namespace(" in line:
        if _SCALED_YOLOV4_CFG.search(line):
            return ScaledYolov4Parser
        if "yolov5" in line:
            return Yolov5Parser
    return None


def _from_columns(names: list[str]) -> type[LogParser] | None:
    """Tell the YOLO generations apart by the loss columns of an epoch header or results.csv header.

    An objectness loss means YOLOv5 or Scaled-YOLOv4. Scaled-YOLOv4 kept the header of the YOLOv5 it forked
    (June 2020: GIoU, obj, cls, total, targets); YOLOv5 renamed GIoU to box in v3.0 and dropped "total" and
    "targets" in v4-v6, so a GIoU header is Scaled-YOLOv4 (a YOLOv5 v1/v2 log names yolov5 in its Namespace
    line first). Loss columns without objectness (box/cls/dfl, RT-DETR's giou/l1) are Ultralytics.
    """
    if not names or names[0] not in ("Epoch", "epoch"):
        return None
    short = {n.lower().removeprefix("train/").removesuffix("_loss") for n in names}
    if "obj" in short:
        return ScaledYolov4Parser if "giou" in short and "targets" in short else Yolov5Parser
    if any(n.endswith("_loss") for n in names):
        return UltralyticsParser
    return None


def _from_validation_header(line: str) -> type[LogParser] | None:
    """A validation table's header: Ultralytics says "Box(P", YOLOv5 counts "Labels" (v4-v6) or "Instances" (v7).

    "Targets" (YOLOv5 ≤ v3 and Scaled-YOLOv4 alike) tells nothing.
    """
    if "Box(P" in line:
        return UltralyticsParser
    if "Instances" in line or "Labels" in line:
        return Yolov5Parser
    return None


class AutoParser:
    """A parser that becomes the detected framework's; `framework` is "auto" until then."""

    def __init__(self) -> None:
        self.framework = "auto"
        self._parser: LogParser | None = None
        self._watch = ErrorWatch()
        self._run = RunRecord()
        self._held: deque[str] = deque(maxlen=_HOLD_LINES)

    def feed(self, line: str) -> list[Parsed]:
        if self._parser is not None:
            return self._parser.feed(line)
        found = detect(line)
        if found is None:
            self._held.append(line)
            out: list[Parsed] = []
            self._watch.check(line, out)
            self._run.add(out)
            return out
        parser = self._parser = found()
        self.framework = parser.framework
        out = parser.take_over(self._watch, self._run.errors, self._held)
        self._held.clear()
        out += parser.feed(line)
        return out

    def summary(self) -> dict[str, Any]:
        if self._parser is not None:
            return self._parser.summary()
        return self._run.summary(None, None, self._watch.pending())
