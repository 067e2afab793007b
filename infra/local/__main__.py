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
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a control-plane setting for this run, e.g. SPOTTER_MAX_CONCURRENT_INSTANCES=1 (repeatable)",
    )
    run.add_argument(
        "--spot-notice-seconds",
        type=float,
        default=None,
        help="seconds between a spot interruption notice and the termination (AWS: 120; default here 10)",
    )
    run.add_argument(
        "--epoch-seconds", type=float, default=None, help="how long one epoch of the stand-in trainer takes"
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
    control: dict[str, str] = {}
    for pair in args.env:
        key, eq, value = pair.partition("=")
        if not eq or not key.startswith("SPOTTER_"):
            print(f"infra.local run: --env takes SPOTTER_NAME=VALUE, not {pair!r}", file=sys.stderr)
            return 2
        control[key] = value
    options: dict[str, Any] = {"control_environ": control}
    if args.spot_notice_seconds is not None:
        options["spot_notice_seconds"] = args.spot_notice_seconds
    if args.epoch_seconds is not None:
        options["standin_epoch_seconds"] = args.epoch_seconds
    stack = LocalStack(trainer=trainer, emit=_print_json, **options)
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
