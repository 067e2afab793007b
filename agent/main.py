"""One job attempt on the instance — spec from S3, the recipe's phases, artifacts, events on the bus, power off — and the CLI.

Whatever happens, the last two steps run: what went wrong is reported, and the machine is powered off.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import agent
from agent import recipes
from agent.emitter import Emitter, EventSink
from agent.imds import Imds, ImdsError
from agent.parsers import get_parser
from agent.parsers.base import ErrorSeen, Metric, Parsed, Progress
from agent.runner import PhaseResult, PhaseRunner, Terminated, install_signal_handlers
from agent.uploader import Uploader
from spotter.aws import client
from spotter.events import Artifact, Bus, JobError, JobEvent, JobFinished, JobMetric, JobPhase, JobProgress, Phase
from spotter.spec import JOB_ID_RE, RunSpec

log = logging.getLogger("agent")

DEFAULT_HOME = "/opt/spotter"
# How long the agent waits for queued events to reach the bus before powering off.
FLUSH_TIMEOUT_SECONDS = 60.0
ERROR_LINES = 30
LINE_MAX = 300
MESSAGE_MAX = 300
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_S3_URL = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$")


def parse_s3_url(url: str) -> tuple[str, str]:
    m = _S3_URL.match(url)
    if not m:
        raise ValueError(f"{url!r} is not an s3://BUCKET/KEY url")
    return m.group(1), m.group(2)


def read_run_spec(s3: Any, url: str) -> RunSpec:
    bucket, key = parse_s3_url(url)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return RunSpec.model_validate_json(body)


def agent_path() -> str:
    """What to put on a phase's PYTHONPATH so `python -m agent.…` works: the zipapp, or the package's parent dir."""
    return str(Path(agent.__file__).resolve().parent.parent)


def phase_env(base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    # Keep what was already on the path (the local stack puts its framework stand-in there).
    env["PYTHONPATH"] = os.pathsep.join([agent_path(), *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_kind_and_message(result: PhaseResult, max_hours: float) -> tuple[str, str]:
    """The JobError kind and one-line message for a failed phase.

    A timeout is ours to name; otherwise what the parser recognised (a specific error over a generic
    crash) says more than the exit status.
    """
    specific = [e for e in result.errors if e.error != "crash"] or list(result.errors)
    seen: ErrorSeen | None = specific[-1] if specific else None
    phase = result.phase
    if result.outcome == "timeout":
        kind, head = "timeout", f"{phase} ran past the job's {max_hours:g} h limit and was stopped"
    elif result.outcome == "killed":
        name = signal.Signals(-result.returncode).name if -result.returncode in signal.valid_signals() else "a signal"
        kind, head = seen.error if seen else "killed", f"{phase} was killed by {name}"
    else:
        kind, head = seen.error if seen else "exit", f"{phase} exited with status {result.returncode}"
    detail = seen.line if seen else next((ln for ln in reversed(result.last_lines) if ln.strip()), "")
    return kind, clip(f"{head}: {detail.strip()}" if detail.strip() else head, MESSAGE_MAX)


def _last_lines(lines: Sequence[str]) -> list[str]:
    return [line[:LINE_MAX] for line in lines[-ERROR_LINES:]]


class Reporter:
    """Makes this attempt's events and offers them to the emitter (never blocking)."""

    def __init__(self, emitter: Emitter, job_id: str, attempt: int) -> None:
        self.emitter = emitter
        self.job_id = job_id
        self.attempt = attempt
        self.current = 0

    def emit(self, cls: type[JobEvent], **fields: Any) -> None:
        self.emitter.offer(cls(job_id=self.job_id, attempt=self.attempt, **fields))

    def on_parsed(self, item: Parsed) -> None:
        if isinstance(item, Progress):
            self.current = item.current
            self.emit(
                JobProgress,
                unit=item.unit,
                current=item.current,
                total=item.total,
                loss=item.loss,
                eta_seconds=item.eta_seconds,
            )
        elif isinstance(item, Metric):
            # The final validation of best weights carries no epoch of its own: it belongs to the last one.
            current = self.current if item.current is None else item.current
            self.emit(
                JobMetric,
                unit=item.unit,
                current=current,
                map50=item.map50,
                map50_95=item.map50_95,
                precision=item.precision,
                recall=item.recall,
            )


def _identify(imds: Imds) -> None:
    try:
        log.info("instance %s (%s) in %s", imds.instance_id(), imds.instance_type(), imds.availability_zone())
    except ImdsError as e:
        log.warning("instance metadata unavailable, carrying on: %s", e)


def run_job(
    job_id: str,
    spec_url: str,
    *,
    workdir: Path,
    poweroff: Callable[[], None],
    s3: Any = None,
    bus: EventSink | None = None,
    imds: Imds | None = None,
    clock: Callable[[], float] = time.monotonic,
    python: str = sys.executable,
) -> int:
    """Run one attempt of `job_id` end to end and power off; 0 if it succeeded, 1 if not."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    agent_log = workdir / "logs" / "agent.log"
    # The agent's own log goes to S3 with the phase logs, whatever the process's logging setup is.
    handler = logging.FileHandler(agent_log)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log.addHandler(handler)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    try:
        return _run_attempt(job_id, spec_url, workdir, poweroff, s3, bus, imds or Imds(), clock, python)
    finally:
        log.removeHandler(handler)
        handler.close()


def _run_attempt(
    job_id: str,
    spec_url: str,
    workdir: Path,
    poweroff: Callable[[], None],
    s3: Any,
    bus: EventSink | None,
    imds: Imds,
    clock: Callable[[], float],
    python: str,
) -> int:
    started = clock()
    try:
        run = read_run_spec(s3 or client("s3"), spec_url)
    except Exception:
        # Without the spec there is no bus to report to: the launcher's watchdog notices the silence.
        log.exception("cannot read the job spec %s", spec_url)
        poweroff()
        return 1
    s3 = s3 or client("s3", run.region)
    emitter = Emitter(bus or Bus(run.bus_name, client("events", run.region))).start()
    reporter = Reporter(emitter, job_id, run.attempt)
    uploader = Uploader(s3, run.bucket, job_id, run.attempt)
    runner = PhaseRunner(workdir, env=phase_env(os.environ), on_parsed=reporter.on_parsed, clock=clock)
    phase: Phase = "install"
    status = 1

    def upload_log(name: str) -> None:
        path = workdir / "logs" / f"{name}.log"
        if not path.exists():
            return
        try:
            uploader.upload_log(name, path)
        except Exception as e:
            log.warning("uploading the %s log failed: %s", name, e)

    try:
        if run.spec.job_id != job_id:
            raise ValueError(f"{spec_url} is the spec of job {run.spec.job_id}, not {job_id}")
        log.info(
            "job %s attempt %d: %s %s (agent %s)", job_id, run.attempt, run.spec.dataset, run.spec.model, agent_path()
        )
        _identify(imds)
        plan = recipes.load(run.spec.recipe).render(run, workdir=workdir, python=python)
        deadline = started + run.spec.params.max_hours * 3600
        result: PhaseResult | None = None
        for command in plan.phases:
            phase = command.phase
            reporter.emit(JobPhase, phase=phase, state="started")
            result = runner.run(phase, command.argv, parser=get_parser(plan.parser), deadline=deadline)
            upload_log(phase)
            if not result.ok:
                kind, message = error_kind_and_message(result, run.spec.params.max_hours)
                reporter.emit(
                    JobError, phase=phase, kind=kind, message=message, last_lines=_last_lines(result.last_lines)
                )
                return status
            reporter.emit(JobPhase, phase=phase, state="finished", seconds=round(result.seconds, 3))

        phase = "upload"
        upload_started = clock()
        reporter.emit(JobPhase, phase=phase, state="started")
        artifacts: list[Artifact] = []
        for item in plan.artifacts:
            if item.path.is_file():
                artifacts.append(uploader.upload_artifact(item.name, item.path))
            elif item.required:
                relative = item.path.relative_to(workdir)
                reporter.emit(
                    JobError,
                    phase=phase,
                    kind="exit",
                    message=f"training finished without its {item.name} artifact ({relative})",
                    last_lines=_last_lines(result.last_lines if result else ()),
                )
                return status
            else:
                log.warning("no %s artifact (%s): skipped", item.name, item.path)
        reporter.emit(JobPhase, phase=phase, state="finished", seconds=round(clock() - upload_started, 3))
        reporter.emit(JobFinished, artifacts=artifacts, seconds=round(clock() - started, 3))
        status = 0
        return status
    except Terminated as e:
        reporter.emit(JobError, phase=phase, kind="killed", message=f"the agent was stopped by {e} during {phase}")
        upload_log(phase)
        return status
    except Exception as e:
        log.exception("agent crashed during %s", phase)
        lines = traceback.format_exc().splitlines()
        reporter.emit(
            JobError,
            phase=phase,
            kind="crash",
            message=clip(f"agent crashed during {phase}: {type(e).__name__}: {e}", MESSAGE_MAX),
            last_lines=_last_lines(lines),
        )
        upload_log(phase)
        return status
    finally:
        log.info(
            "job %s attempt %d %s after %.1fs",
            job_id,
            run.attempt,
            "succeeded" if status == 0 else "failed",
            clock() - started,
        )
        upload_log("agent")
        if not emitter.close(FLUSH_TIMEOUT_SECONDS):
            log.error("powering off with events the bus never got")
        poweroff()


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
        parse_s3_url(text)
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
    sub.add_parser("parse", help="parse a training log into events (see `parse --help`)", add_help=False)
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    workdir = ns.workdir or Path(os.environ.get("SPOTTER_HOME") or DEFAULT_HOME) / "work" / ns.job
    install_signal_handlers()
    return run_job(ns.job, ns.spec, workdir=workdir.resolve(), poweroff=shutdown_now)
