"""`make bench`: log parser throughput, in lines per CPU second, for each framework.

Each parser reads a 1,000,000-line log made by repeating a real console of its framework (the fixtures named
in agent/parsers/bench.py). The target is 200,000 lines/s for every framework: a training box prints far
fewer, and the parser shares the machine with the training it watches. The baseline is the same lines only split
into words, on the same machine in the same run.

    python -m bench.parsers          # BENCH_PARSER_LINES=N for fewer (or more) lines
"""

from __future__ import annotations

import os
import sys
import time

from agent.parsers import FRAMEWORKS
from agent.parsers.bench import SAMPLES, sample_lines, throughput
from bench.results import Result, at_least, publish

LINES = 1_000_000
TARGET_LINES_PER_S = 200_000


def split_rate(framework: str, lines: int) -> float:
    """Lines per CPU second of the least any reader of the log does: split each line into words."""
    log = sample_lines(framework, lines)
    start = time.process_time()
    for line in log:
        line.split()
    return lines / (time.process_time() - start)


def run(lines: int = LINES) -> list[Result]:
    """Each framework's parser, over `lines` lines of its real log repeated, beside the split-only baseline."""
    return [
        at_least(
            f"parser {framework} ({SAMPLES[framework]})",
            throughput(framework, lines),
            "lines/s",
            TARGET_LINES_PER_S,
            f"split only {split_rate(framework, lines):,.0f} lines/s",
        )
        for framework in FRAMEWORKS
    ]


def main() -> int:
    return publish(run(int(os.environ.get("BENCH_PARSER_LINES", LINES))))


if __name__ == "__main__":
    sys.exit(main())
