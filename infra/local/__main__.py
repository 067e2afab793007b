"""`python -m infra.local demo` and `python -m infra.local run SCENARIO.yaml` (contracts in DESIGN.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

# The event stream owns stdout. What the in-process Lambdas print (powertools' JSON logs and metrics, which
# CloudWatch would receive in AWS) goes to stderr, so it can never interleave with an event line.
_EVENTS = sys.stdout


RUN_EPILOG = """\
scenario steps (a YAML list; each step is named by its first key):
  - slash: "/train shapes yolov8n"      [user: U…] [channel: C…]
                                        [signature: valid|bad|stale|missing|replay] [retry: N]
  - click: {button: cancel|logs|download, job: last, user: U…, channel: C…, double: true}
  - wait: {job: last, status: SUCCEEDED, timeout: 600, at_progress: 0.5}
  - sleep: 5
  - fire_schedule: all                  (or one schedule's name)
  - inject: {spot_interruption|instance_vanishes|kill_agent: {job: last, at_progress: 0.5}}
  - inject: {capacity_error: {instance_types: [g4dn.xlarge], market: spot}}
  - inject: {slack: {method: chat.update, status: 429, retry_after: 5, for_seconds: 60}}
  - inject: {s3: {operation: PutObject, status: 500, times: 3}}
One JSON line per event on stdout, then {"final": …}. Exit 0 when every step ran, 1 when one failed,
2 when the scenario or an option is wrong.
"""
_USERGROUP = re.compile(r"^(S[A-Z0-9]+)=([UW][A-Z0-9]+(?:,[UW][A-Z0-9]+)*)?$")


class OptionError(ValueError):
    """A command-line option the run cannot use."""


def _print_json(record: dict[str, Any]) -> None:
    _EVENTS.write(json.dumps(record, default=str) + "\n")
    _EVENTS.flush()


def parse_env(pairs: list[str]) -> dict[str, str]:
    """`--env SPOTTER_NAME=VALUE` settings for the in-process Lambdas (they win over the template's)."""
    control: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.startswith("SPOTTER_"):
            raise OptionError(f"--env takes SPOTTER_NAME=VALUE, not {pair!r}")
        control[key] = value
    return control


def parse_params(pairs: list[str]) -> dict[str, str]:
    """`--param Name=Value` template parameter overrides, checked against template.yaml's declarations."""
    from infra.local.aws import ParameterError, check_parameters

    params: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise OptionError(f"--param takes ParameterName=VALUE, not {pair!r}")
        params[name] = value
    try:
        check_parameters(params)
    except ParameterError as e:
        raise OptionError(f"--param: {e}") from None
    return params


def parse_usergroups(pairs: list[str]) -> dict[str, list[str]]:
    """`--usergroup S123=U1,U2`: a user group of the local workspace and its members (none after `=`: empty)."""
    groups: dict[str, list[str]] = {}
    for pair in pairs:
        m = _USERGROUP.match(pair)
        if m is None:
            raise OptionError(f"--usergroup takes S…=U…,U… (a user group id and member user ids), not {pair!r}")
        groups[m.group(1)] = m.group(2).split(",") if m.group(2) else []
    return groups


@contextlib.contextmanager
def lambda_output_to(log: TextIO) -> Iterator[None]:
    """Everything the in-process Lambdas write goes to `log`, as it would go to CloudWatch in AWS: what they
    print (Powertools' JSON logs and metrics), stdlib logging (bolt, slack_sdk, botocore) and warnings.

    The terminal keeps what is written to sys.stderr on purpose and the stream the caller was given before.
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    logging.captureWarnings(True)
    saved = sys.stdout
    sys.stdout = log
    try:
        yield
    finally:
        sys.stdout = saved
        logging.captureWarnings(False)
        root.removeHandler(handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("demo", help="a real CPU training end to end, printing the channel, ending with a JSON summary")
    run = sub.add_parser(
        "run",
        help="run a scenario on a fresh local stack, printing JSON lines",
        description="Run SCENARIO.yaml on a fresh local stack, printing one JSON line per event.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        help="a setting of the in-process Lambdas for this run, over the template's, e.g. "
        "SPOTTER_MAX_CONCURRENT_INSTANCES=1 or SPOTTER_ALLOWED_CHANNELS=C1 (repeatable)",
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template.yaml parameter for this run instead of its default, e.g. AllowedChannels=C1 or "
        "Admins=U0ALICE; checked against the parameter's constraints (repeatable)",
    )
    run.add_argument(
        "--usergroup",
        action="append",
        default=[],
        metavar="S…=U…,U…",
        help="a user group of the local workspace and its members, for usergroups.users.list, "
        "e.g. S0MLTEAM=U0ALICE,U0BOB (repeatable)",
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
        with logs.open("w") as cloudwatch, lambda_output_to(cloudwatch):
            return demo(out=_EVENTS, lambda_log=logs)
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
    try:
        options: dict[str, Any] = {
            "control_environ": parse_env(args.env),
            "parameters": parse_params(args.param),
            "usergroups": parse_usergroups(args.usergroup),
        }
    except OptionError as e:
        print(f"infra.local run: {e}", file=sys.stderr)
        return 2
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
