"""The agent's command line: `python -m agent run --job ID --spec S3_URI` runs a job attempt and powers the machine
off; `python -m agent parse …` parses a training log (agent.parsers.cli)."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

from agent.job import LOG_FORMAT, run_job
from agent.runner import install_signal_handlers
from spotter import layout
from spotter.spec import JOB_ID_RE

log = logging.getLogger("agent")

DEFAULT_HOME = "/opt/spotter"


def shutdown_now() -> None:
    """Power the machine off (the instance's shutdown behaviour is terminate)."""
    try:
        subprocess.run(["shutdown", "-h", "now"], stdin=subprocess.DEVNULL, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        log.error("shutdown -h now failed: %s", e)


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _job_id(text: str) -> str:
    if not JOB_ID_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a job id (lower-case letters, digits and dashes)")
    return text


def _s3_url(text: str) -> str:
    try:
        layout.parse_s3_uri(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def cli(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["parse"]:
        from agent.parsers.cli import main as parse_main

        return parse_main(args[1:])
    parser = _ArgumentParser(prog="agent", description="The Spotter agent on a training instance.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,parse}")
    run = sub.add_parser("run", help="run one job attempt, then power the machine off")
    run.add_argument("--job", required=True, type=_job_id, help="the job id")
    run.add_argument("--spec", required=True, type=_s3_url, help="s3://BUCKET/jobs/JOB/job.json")
    run.add_argument("--workdir", type=Path, help="default: $SPOTTER_HOME/work/JOB (SPOTTER_HOME: /opt/spotter)")
    run.add_argument(
        "--python",
        default=sys.executable,
        help="the image's framework Python the recipes run with (default: the agent's own)",
    )
    sub.add_parser("parse", help="parse a training log into events (see `parse --help`)", add_help=False)
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    workdir = ns.workdir or Path(os.environ.get("SPOTTER_HOME") or DEFAULT_HOME) / "work" / ns.job
    install_signal_handlers()
    return run_job(ns.job, ns.spec, workdir=workdir.resolve(), poweroff=shutdown_now, python=ns.python)
