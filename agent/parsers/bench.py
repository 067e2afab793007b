"""Measure parser throughput (lines/s) on logs made by repeating a real log per framework.

The parsers run on every output line of a training box; `python -m agent.parsers.bench` prints one row
per framework, and `make bench` reports the same figures through bench/parsers.py. Needs a repository
checkout (the logs are the test fixtures, under tests/).
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

from agent.parsers import FRAMEWORKS, get_parser
from agent.parsers.lines import LineSplitter

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "logs"
# A real console per framework, as the agent reads it: progress rows (bar redraws where the framework
# draws bars), validation tables and the rest in the proportions of an actual run. Our own piped
# Ultralytics run is the redraw-heaviest of all (two lines in three are a bar redraw).
SAMPLES = {
    "darknet": "darknet_03.log",
    "yolov5": "yolov5_06.log",
    "scaled-yolov4": "scaledyolov4_03.log",
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
