"""`make bench`: log parser throughput, in lines per CPU second, for each framework.

Each parser reads a 1,000,000-line log made by repeating a real console of its framework (the fixtures named
in agent/parsers/bench.py). The target is 200,000 lines/s for every framework: a training box prints far
fewer, and the parser shares the machine with the training it watches.

    python -m bench.parsers
"""

from __future__ import annotations

import json
import sys

from agent.parsers import FRAMEWORKS
from agent.parsers.bench import SAMPLES, throughput

LINES = 1_000_000
TARGET_LINES_PER_S = 200_000


def run(lines: int = LINES) -> dict[str, float]:
    """Lines per CPU second for each framework, over `lines` lines of its real log repeated."""
    return {framework: round(throughput(framework, lines)) for framework in FRAMEWORKS}


def main() -> int:
    figures = run()
    print(f"{'framework':<14} {'log':<28} {'lines/s':>10}   target {TARGET_LINES_PER_S:,}")
    for framework, rate in figures.items():
        verdict = "ok" if rate >= TARGET_LINES_PER_S else "BELOW"
        print(f"{framework:<14} {SAMPLES[framework]:<28} {rate:>10,.0f}   {verdict}")
    print(json.dumps({"parser_lines_per_s": figures, "lines": LINES}))
    return 0 if all(rate >= TARGET_LINES_PER_S for rate in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
