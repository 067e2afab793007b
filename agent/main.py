"""One job attempt on the instance — spec from S3, the recipe's plan phase by phase (install → build → data →
train → evaluate → upload), events on the bus, power off — and the CLI.

Whatever happens, the last two steps run: what went wrong is reported, and the machine is powered off.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

import agent
from agent import recipes
from agent.build import BuildFailed, ensure_build
from agent.datasets import DatasetError, prepare
from agent.emitter import Emitter, EventSink
from agent.imds import Imds, ImdsError
from agent.inputs import InputError, fetch_pretrained
from agent.parsers import get_parser
from agent.parsers.base import ErrorSeen, Metric, Parsed, Progress
from agent.plan import ArtifactPath, Plan, Step
from agent.recipes import RecipeError
from agent.runner import PhaseResult, PhaseRunner, Terminated, install_signal_handlers
from agent.uploader import TRANSFER_CONFIG, Uploader, sha256_of
from spotter import catalog
from spotter.aws import client
from spotter.events import (
    Artifact,
    Bus,
    JobBuildReady,
    JobCheckpoint,
    JobError,
    JobEvent,
    JobFinished,
    JobMetric,
    JobPhase,
    JobProgress,
    Phase,
)
from spotter.spec import JOB_ID_RE, RunSpec

log = logging.getLogger("agent")

DEFAULT_HOME = "/opt/spotter"
# How long the agent waits for queued events to reach the bus before powering off.
FLUSH_TIMEOUT_SECONDS = 60.0
ERROR_LINES = 30
LINE_MAX = 300
MESSAGE_MAX = 300
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What the build cache keys a build on when the machine cannot say (no instance metadata, not a catalog GPU).
UNKNOWN_IMAGE = "unknown"
NO_GPU_ARCH = "cpu"
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


def newest(path: Path) -> Path | None:
    """`path` if it is a file; for a path with one `*`, the most recently written file it matches."""
    if "*" not in str(path):
        return path if path.is_file() else None
    parts = path.parts
    at = next(i for i, part in enumerate(parts) if "*" in part)
    matches = [p for p in Path(*parts[:at]).glob(str(Path(*parts[at:]))) if p.is_file()]
    return max(matches, key=lambda p: p.stat().st_mtime, default=None)


def checkpoint_key(job_id: str, suffix: str) -> str:
    """Where an attempt leaves the checkpoint the next one resumes from."""
    return f"jobs/{job_id}/{recipes.CHECKPOINTS_DIR}/{recipes.CHECKPOINT_STEM}{suffix}"


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


@dataclass(frozen=True)
class Machine:
    gpu_arch: str | None  # the catalog's "sm_75"…; None off the catalog's GPU types (a local CPU run)
    image_id: str | None


def identify(imds: Imds) -> Machine:
    """What the build and the recipe need to know of this machine, from its instance metadata."""
    try:
        instance_type = imds.instance_type()
        log.info("instance %s (%s) in %s", imds.instance_id(), instance_type, imds.availability_zone())
    except ImdsError as e:
        log.warning("instance metadata unavailable, carrying on: %s", e)
        return Machine(gpu_arch=None, image_id=None)
    gpu = catalog.GPU_TYPES.get(instance_type)
    try:
        image_id: str | None = imds.image_id()
    except ImdsError as e:
        log.warning("no machine image id in the instance metadata: %s", e)
        image_id = None
    log.info("image %s, GPU %s", image_id, f"{gpu.gpu} ({gpu.arch})" if gpu else "none the catalog knows")
    return Machine(gpu_arch=gpu.arch if gpu else None, image_id=image_id)


class PhaseFailed(Exception):
    """A phase that did not succeed, as the JobError that reports it."""

    def __init__(self, kind: str, message: str, last_lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = clip(message, MESSAGE_MAX)
        self.last_lines = _last_lines(last_lines)


class StepRunner(PhaseRunner):
    """Runs a step's commands in the step's own folder; the log stays with the attempt's other phase logs."""

    def __init__(self, logs: Path, cwd: Path, **kwargs: Any) -> None:
        super().__init__(cwd, **kwargs)
        self.logs = logs

    def log_path(self, phase: str) -> Path:
        return self.logs / f"{phase}.log"


class Attempt:
    """The phases of one attempt, each reported as it starts and ends; a failure raises PhaseFailed."""

    def __init__(
        self,
        run: RunSpec,
        workdir: Path,
        *,
        s3: Any,
        reporter: Reporter,
        uploader: Uploader,
        env: Mapping[str, str],
        clock: Callable[[], float],
        deadline: float,
    ) -> None:
        self.run = run
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.s3 = s3
        self.reporter = reporter
        self.uploader = uploader
        self.env = dict(env)
        self.clock = clock
        self.deadline = deadline
        self.phase: Phase = "install"
        self.last: PhaseResult | None = None  # the step that ran last: what a failure report quotes

    # -- running steps ------------------------------------------------------------------------------------------

    def run_step(self, step: Step, *, parser: str | None = None, events: bool = False) -> bool:
        """Run the step's commands until one fails; only training and evaluation put progress on the bus."""
        runner = StepRunner(
            self.logs,
            step.cwd or self.workdir,
            env={**self.env, **step.env},
            on_parsed=self.reporter.on_parsed if events else None,
            clock=self.clock,
        )
        # One parser for the whole step: it recognises errors in every phase's output.
        framework = get_parser(parser) if parser else None
        for argv in step.commands:
            self.last = runner.run(step.phase, argv, parser=framework, deadline=self.deadline)
            if not self.last.ok:
                return False
        return True

    def failure(self, e: Exception | None = None) -> PhaseFailed:
        """The report of the step that just failed, or else of `e` (a failure of the agent's own part)."""
        result = self.last if self.last is not None and not self.last.ok else None
        if result is None:
            return PhaseFailed("exit", str(e))
        kind, message = error_kind_and_message(result, self.run.spec.params.max_hours)
        return PhaseFailed(kind, message, result.last_lines)

    def begin(self, phase: Phase, *, announce: bool = True) -> float:
        self.phase = phase
        self.last = None
        if announce:
            self.reporter.emit(JobPhase, phase=phase, state="started")
        return self.clock()

    def end(self, phase: Phase, started: float, *, state: str = "finished", detail: str | None = None) -> None:
        self.reporter.emit(JobPhase, phase=phase, state=state, seconds=round(self.clock() - started, 3), detail=detail)

    def upload_log(self, phase: str) -> None:
        path = self.logs / f"{phase}.log"
        if not path.exists():
            return
        try:
            self.uploader.upload_log(phase, path)
        except Exception as e:
            log.warning("uploading the %s log failed: %s", phase, e)

    # -- the phases ---------------------------------------------------------------------------------------------

    def step_phase(self, step: Step, parser: str) -> None:
        """install, train or evaluate: one step of the plan."""
        started = self.begin(step.phase)
        ok = self.run_step(step, parser=parser, events=step.phase in ("train", "evaluate"))
        self.upload_log(step.phase)
        if not ok:
            raise self.failure()
        self.end(step.phase, started)

    def build(self, plan: Plan, machine: Machine) -> None:
        """Restore the framework's build from the cache or build it, then put it to use (plan.setup).

        The channel hears "started" only when the build's own commands run, and "cached" when it was restored.
        """
        build = plan.build
        assert build is not None
        started = self.begin("build", announce=False)
        announced = False

        def run(step: Step) -> bool:
            nonlocal announced
            if not announced and step.commands == build.commands:
                self.reporter.emit(JobPhase, phase="build", state="started")
                announced = True
            return self.run_step(step, parser=plan.parser)

        try:
            outcome = ensure_build(
                build,
                s3=self.s3,
                bucket=self.run.bucket,
                job_id=self.run.spec.job_id,
                attempt=self.run.attempt,
                image_id=machine.image_id or UNKNOWN_IMAGE,
                gpu_arch=machine.gpu_arch or NO_GPU_ARCH,
                run=run,
            )
            if plan.setup is not None and not self.run_step(plan.setup, parser=plan.parser):
                raise BuildFailed(f"putting the {plan.recipe} build to use failed (see the build log)")
        except BuildFailed as e:
            raise self.failure(e) from e
        finally:
            self.upload_log("build")
        if outcome.cached:
            self.end("build", started, state="cached", detail=f"{plan.recipe} restored from the build cache")
            return
        self.end("build", started)
        if outcome.artifact is not None:
            # The control plane decides whether it enters the cache later jobs trust.
            self.reporter.emit(JobBuildReady, recipe=plan.recipe, key=outcome.key, artifact=outcome.artifact)

    def data(self, plan: Plan, resumed: Callable[[], Plan]) -> Plan:
        """The dataset in the trainer's layout, a resumed attempt's checkpoint, and the pretrained weights.

        Returns the plan to train with: `resumed()` when this attempt restarts from the last one's checkpoint.
        """
        started = self.begin("data")
        try:
            # The dataset's own account of what it did goes to the data log, with the data commands' output.
            with open(self.logs / "data.log", "a", buffering=1) as out, contextlib.redirect_stdout(out):
                prepare(plan.data, s3=self.s3, bucket=self.run.bucket, run=lambda step: self.run_step(step))
            if self.run.attempt > 1 and plan.resume_from is not None and self.restore_checkpoint(plan.resume_from):
                plan = resumed()
            fetch_pretrained(plan.pretrained, s3=self.s3, bucket=self.run.bucket)
        except (DatasetError, InputError) as e:
            raise self.failure(e) from e
        finally:
            self.upload_log("data")
        self.end("data", started)
        return plan

    def upload(self, plan: Plan) -> list[Artifact]:
        # A missing artifact is quoted with the end of the output that should have written it.
        before = self.last.last_lines if self.last is not None else ()
        started = self.begin("upload")
        artifacts: list[Artifact] = []
        for item in plan.artifacts:
            path = newest(item.path)
            if path is not None:
                artifacts.append(self.uploader.upload_artifact(item.name, path))
            elif item.required:
                relative = item.path.relative_to(self.workdir)
                raise PhaseFailed("exit", f"training finished without its {item.name} artifact ({relative})", before)
            else:
                log.warning("no %s artifact (%s): skipped", item.name, item.path)
        self.end("upload", started)
        return artifacts

    # -- checkpoints --------------------------------------------------------------------------------------------

    def restore_checkpoint(self, checkpoint: ArtifactPath) -> bool:
        """Fetch the checkpoint an earlier attempt left; False (train afresh) when there is none."""
        suffix = checkpoint.path.suffix
        key = checkpoint_key(self.run.spec.job_id, suffix)
        dest = recipes.restored_checkpoint(self.workdir, suffix)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.s3.download_file(self.run.bucket, key, str(dest), Config=TRANSFER_CONFIG)
        except (ClientError, BotoCoreError) as e:
            log.warning("no checkpoint to resume from at s3://%s/%s (%s): training afresh", self.run.bucket, key, e)
            return False
        log.info("attempt %d resumes from s3://%s/%s", self.run.attempt, self.run.bucket, key)
        return True

    def save_checkpoint(self, plan: Plan) -> None:
        """Leave the training's latest checkpoint where the next attempt looks for it (best effort)."""
        if plan.resume_from is None:
            return
        path = newest(plan.resume_from.path)
        if path is None:
            log.info("no checkpoint to save (%s)", plan.resume_from.path)
            return
        key = checkpoint_key(self.run.spec.job_id, path.suffix)
        try:
            sha256, size = sha256_of(path)
            self.s3.upload_file(
                str(path), self.run.bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}}, Config=TRANSFER_CONFIG
            )
        except Exception as e:
            log.warning("saving the checkpoint %s failed: %s", path, e)
            return
        artifact = Artifact(name="checkpoint", key=key, sha256=sha256, size=size)
        self.reporter.emit(JobCheckpoint, artifact=artifact, current=self.reporter.current or None)


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
    attempt = Attempt(
        run,
        workdir,
        s3=s3,
        reporter=reporter,
        uploader=Uploader(s3, run.bucket, job_id, run.attempt),
        env=phase_env(os.environ),
        clock=clock,
        deadline=started + run.spec.params.max_hours * 3600,
    )
    plan: Plan | None = None
    status = 1

    try:
        if run.spec.job_id != job_id:
            raise ValueError(f"{spec_url} is the spec of job {run.spec.job_id}, not {job_id}")
        log.info(
            "job %s attempt %d: %s %s (agent %s)", job_id, run.attempt, run.spec.dataset, run.spec.model, agent_path()
        )
        machine = identify(imds)
        recipe = recipes.load(run.spec.recipe)

        def render(resume: bool = False) -> Plan:
            return recipe.render(
                run, workdir=workdir, python=python, gpu_arch=machine.gpu_arch, cpus=os.cpu_count() or 1, resume=resume
            )

        try:
            plan = render()
        except RecipeError as e:
            raise PhaseFailed("exit", str(e)) from e
        if plan.install is not None:
            attempt.step_phase(plan.install, plan.parser)
        if plan.build is not None:
            attempt.build(plan, machine)
        plan = attempt.data(plan, lambda: render(resume=True))
        attempt.step_phase(plan.train, plan.parser)
        if plan.evaluate is not None:
            attempt.step_phase(plan.evaluate, plan.parser)
        artifacts = attempt.upload(plan)
        reporter.emit(JobFinished, artifacts=artifacts, seconds=round(clock() - started, 3))
        status = 0
        return status
    except PhaseFailed as e:
        if attempt.phase == "train" and plan is not None:
            attempt.save_checkpoint(plan)
        reporter.emit(JobError, phase=attempt.phase, kind=e.kind, message=e.message, last_lines=e.last_lines)
        return status
    except Terminated as e:
        phase = attempt.phase
        if phase == "train" and plan is not None:
            attempt.save_checkpoint(plan)
        reporter.emit(JobError, phase=phase, kind="killed", message=f"the agent was stopped by {e} during {phase}")
        attempt.upload_log(phase)
        return status
    except Exception as e:
        phase = attempt.phase
        log.exception("agent crashed during %s", phase)
        lines = traceback.format_exc().splitlines()
        reporter.emit(
            JobError,
            phase=phase,
            kind="crash",
            message=clip(f"agent crashed during {phase}: {type(e).__name__}: {e}", MESSAGE_MAX),
            last_lines=_last_lines(lines),
        )
        attempt.upload_log(phase)
        return status
    finally:
        log.info(
            "job %s attempt %d %s after %.1fs",
            job_id,
            run.attempt,
            "succeeded" if status == 0 else "failed",
            clock() - started,
        )
        attempt.upload_log("agent")
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
