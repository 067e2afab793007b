"""`python -m agent parse`: run a parser over a saved log and print its events or its summary as JSON.

    python -m agent parse --framework {darknet,…,auto} [--summary] FILE

Without --summary, one JSON object per event ({"kind": "progress"|"metric"|"error", …fields}); with it,
the summary object of the parse contract (shared/DESIGN.md). Exit 2 when FILE cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import BinaryIO, TextIO

from agent.parsers import FRAMEWORKS, get_parser
from agent.parsers.base import Parser, as_dict
from agent.parsers.lines import LineSplitter

_CHUNK = 1 << 20


def main(argv: list[str]) -> int:
    args = argparse.ArgumentParser(prog="python -m agent parse", description=__doc__.splitlines()[0])
    args.add_argument("--framework", required=True, choices=(*FRAMEWORKS, "auto"))
    args.add_argument("--summary", action="store_true", help="print one summary object instead of the events")
    args.add_argument("file", help="a training log as the framework printed it")
    try:
        a = args.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message
        return exc.code if isinstance(exc.code, int) else 2

    try:
        log = open(a.file, "rb")  # noqa: SIM115 — closed below; opening and reading fail differently than writing
    except OSError as exc:
        print(f"parse: cannot read {a.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        with log:
            _parse(log, get_parser(a.framework), a.summary, sys.stdout)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep the interpreter's final flush from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:
        print(f"parse: cannot read {a.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def _parse(log: BinaryIO, parser: Parser, summary: bool, out: TextIO) -> None:
    splitter = LineSplitter()
    while chunk := log.read(_CHUNK):
        _print_events(parser, splitter.feed(chunk), summary, out)
    _print_events(parser, splitter.flush(), summary, out)
    if summary:
        out.write(json.dumps(parser.summary(), allow_nan=False) + "\n")
    out.flush()


def _print_events(parser: Parser, lines: list[str], summary: bool, out: TextIO) -> None:
    events = [event for line in lines for event in parser.feed(line)]
    if events and not summary:
        out.write("".join(json.dumps(as_dict(event), allow_nan=False) + "\n" for event in events))
