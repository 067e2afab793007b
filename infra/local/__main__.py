"""`python -m infra.local demo` and `python -m infra.local run SCENARIO.yaml` (contracts in DESIGN.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# The event stream owns stdout. What the in-process Lambdas print (powertools' JSON logs and metrics, which
# CloudWatch would receive in AWS) goes to stderr, so it can never interleave with an event line.
_EVENTS = sys.stdout


def _print_json(record: dict[str, Any]) -> None:
    _EVENTS.write(json.dumps(record, default=str) + "\n")
    _EVENTS.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="a real CPU training end to end, printing the channel, ending with a JSON summary")
    run = sub.add_parser("run", help="run a scenario on a fresh local stack, printing JSON lines")
    run.add_argument("scenario", type=Path)
    run.add_argument(
        "--trainer",
        choices=("auto", "real", "standin"),
        default="auto",
        help="the framework on the instances: real Ultralytics (needs torch) or the stand-in "
        "that prints the real log format; auto picks real when it is installed",
    )
    args = p.parse_args(argv)

    if args.cmd == "demo":
        from infra.local.demo import demo

        logs = Path(".spotter") / "demo-lambda.log"
        logs.parent.mkdir(exist_ok=True)
        with logs.open("w") as cloudwatch:
            sys.stdout = cloudwatch
            try:
                return demo(out=_EVENTS, lambda_log=logs)
            finally:
                sys.stdout = _EVENTS
    sys.stdout = sys.stderr

    from infra.local.scenario import ScenarioError, load, summary_line
    from infra.local.scenario import run as run_steps
    from infra.local.stack import LocalStack, real_trainer_available

    try:
        steps = load(args.scenario)
    except ScenarioError as e:
        print(f"infra.local run: {e}", file=sys.stderr)
        return 2
    trainer = args.trainer
    if trainer == "auto":
        trainer = "real" if real_trainer_available() else "standin"
    elif trainer == "real" and not real_trainer_available():
        print("infra.local run: --trainer real needs torch and ultralytics (run `make demo` once)", file=sys.stderr)
        return 2
    stack = LocalStack(trainer=trainer, emit=_print_json)
    try:
        stack.start()
        code = run_steps(stack, steps)
        _print_json(summary_line(stack))
        return code
    except ScenarioError as e:
        print(f"infra.local run: {e}", file=sys.stderr)
        return 2
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
