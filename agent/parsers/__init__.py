"""Log parsers: turn a framework's console output into progress, metrics and recognised errors.

`get_parser(name)` gives a fresh parser for one run; "auto" recognises the framework from the log.
"""

from __future__ import annotations

from agent.parsers.auto import AutoParser
from agent.parsers.base import Parser
from agent.parsers.common import LogParser
from agent.parsers.darknet import DarknetParser
from agent.parsers.detectron2 import Detectron2Parser
from agent.parsers.yolo import ScaledYolov4Parser, UltralyticsParser, Yolov5Parser

_PARSERS: dict[str, type[LogParser]] = {
    cls.framework: cls for cls in (DarknetParser, Yolov5Parser, ScaledYolov4Parser, Detectron2Parser, UltralyticsParser)
}
FRAMEWORKS: tuple[str, ...] = tuple(_PARSERS)


def get_parser(name: str) -> Parser:
    """A new parser for `name` (one of FRAMEWORKS, or "auto"); ValueError names the valid ones."""
    if name == "auto":
        return AutoParser()
    try:
        return _PARSERS[name]()
    except KeyError:
        raise ValueError(f"unknown framework {name!r}; expected one of: {', '.join(FRAMEWORKS)}, auto") from None
