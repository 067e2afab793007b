"""Measure parser throughput (lines/s) on logs made by repeating the test fixtures.

The parsers run on every output line of a training box; `python -m agent.parsers.bench` prints one row
per framework. Needs a repository checkout (the fixtures live under tests/).
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

from agent.parsers import FRAMEWORKS, get_parser
from agent.parsers.lines import LineSplitter

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "logs"
# The most realistic fixture per framework: our own piped Ultralytics run has the redraw-heavy shape
# of a real console; the others are the public samples.
SAMPLES = {
    "darknet": "darknet_03.log",
    "yolov5": "yolov5_04.log",
    "scaled-yolov4": "scaledyolov4_02.log",
    "detectron2": "detectron2_01.log",
    "ultralytics": "ultralytics_shapes_cpu.log",
}


def sample_lines(framework: str, lines: int) -> list[str]:
    """`lines` logical lines of `framework`'s fixture, repeated as often as needed."""
    splitter = LineSplitter()
    one = splitter.feed((FIXTURES / SAMPLES[framework]).read_bytes()) + splitter.flush()
    return list(itertools.islice(itertools.cycle(one), lines))


def throughput(framework: str, lines: int = 1_000_000) -> float:
    """Lines per CPU second a fresh `framework` parser takes in, over `lines` lines of its repeated fixture.

    CPU time, not wall time: the training it runs beside competes for the cores, the parser's cost does not change.
    """
    log = sample_lines(framework, lines)
    parser = get_parser(framework)
    feed = parser.feed
    start = time.process_time()
    for line in log:
        feed(line)
    return lines / (time.process_time() - start)


def main() -> int:
    print(f"{'framework':<14} {'fixture':<28} {'lines/s':>12}")
    for framework in FRAMEWORKS:
        print(f"{framework:<14} {SAMPLES[framework]:<28} {throughput(framework):>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
