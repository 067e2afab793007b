"""One attempt's phases on the instance — install → build → data → train → evaluate → upload — each reported
as it starts and ends; a failure raises PhaseFailed, a stop asked from another thread raises Stopped."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import agent
from agent.build import BuildFailed, ensure_build
from agent.datasets import DatasetError, prepare
from agent.globs import newest
from agent.imds import Imds, ImdsError
from agent.inputs import InputError, fetch_pretrained, fetch_promoted
from agent.parsers import get_parser
from agent.parsers.base import ErrorSeen, Parser
from agent.plan import Plan, Step
from agent.reporter import Reporter
from agent.resume import restore
from agent.runner import PhaseResult, PhaseRunner
from agent.uploader import Uploader
from spotter import catalog
from spotter.events import Artifact, FinalMetrics, JobBuildReady, JobPhase, Phase
from spotter.spec import RunSpec

log = logging.getLogger("agent")

ERROR_LINES = 30
LINE_MAX = 300
MESSAGE_MAX = 300
# What the build cache keys a build on when the machine cannot say (no instance metadata, not a catalog GPU).
UNKNOWN_IMAGE = "unknown"
NO_GPU_ARCH = "cpu"
NO_SCORES = FinalMetrics()


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
    elif result.outcome == "stopped":
        kind, head = "killed", f"{phase} was stopped by the agent"
    elif result.outcome == "killed":
        name = signal.Signals(-result.returncode).name if -result.returncode in signal.valid_signals() else "a signal"
        kind, head = seen.error if seen else "killed", f"{phase} was killed by {name}"
    else:
        kind, head = seen.error if seen else "exit", f"{phase} exited with status {result.returncode}"
    detail = seen.line if seen else next((ln for ln in reversed(result.last_lines) if ln.strip()), "")
    return kind, clip(f"{head}: {detail.strip()}" if detail.strip() else head, MESSAGE_MAX)


def last_lines(lines: Sequence[str]) -> list[str]:
    return [line[:LINE_MAX] for line in lines[-ERROR_LINES:]]


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

    def __init__(self, kind: str, message: str, lines: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = clip(message, MESSAGE_MAX)
        self.last_lines = last_lines(lines)


class Stopped(Exception):
    """The attempt was asked to stop (an interruption notice, a cancel): whoever asked reports how it ended."""


class StepRunner(PhaseRunner):
    """Runs a step's commands in the step's own folder; the log stays with the attempt's other phase logs."""

    def __init__(self, logs: Path, cwd: Path, **kwargs: Any) -> None:
        super().__init__(cwd, **kwargs)
        self.logs = logs

    def log_path(self, phase: str) -> Path:
        return self.logs / f"{phase}.log"


class Attempt:
    """The phases of one attempt. `stop` (set from any thread) ends the running command and every later one."""

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
        # The parser of the train and evaluate steps that ran, in order: what they recorded of the framework's scores.
        self.parsers: dict[Phase, Parser] = {}
        self.stop = threading.Event()
        self.idle = threading.Event()  # set while no command of a phase is running
        self.idle.set()

    # -- running steps ------------------------------------------------------------------------------------------

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped(f"stopped during {self.phase}")

    def run_step(self, step: Step, *, parser: str | None = None, events: bool = False) -> bool:
        """Run the step's commands until one fails; only training and evaluation put progress on the bus."""
        runner = StepRunner(
            self.logs,
            step.cwd or self.workdir,
            env={**self.env, **step.env},
            on_parsed=self.reporter.on_parsed if events else None,
            clock=self.clock,
            stop=self.stop,
        )
        # One parser for the whole step: it recognises errors in every phase's output.
        framework = get_parser(parser) if parser else None
        if framework is not None and events:
            self.parsers[step.phase] = framework
        for argv in step.commands:
            self.check_stop()
            self.idle.clear()
            try:
                self.last = runner.run(step.phase, argv, parser=framework, deadline=self.deadline)
            finally:
                self.idle.set()
            if self.last.outcome == "stopped":
                raise Stopped(f"{step.phase} stopped")
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
        self.check_stop()
        self.phase = phase
        self.reporter.phase = phase
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
        try:
            ok = self.run_step(step, parser=parser, events=step.phase in ("train", "evaluate"))
        finally:
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
                outputs=self.uploader.outputs,
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

    def data(self, plan: Plan, resumed: Callable[[], Plan], checkpoint: Path | None, unit: str) -> Plan:
        """The dataset in the trainer's layout, the checkpoint the run spec names (verified), the pretrained weights
        or the promoted ones in their place (verified).

        Returns the plan to train with: `resumed()` when the checkpoint restored (at `checkpoint`) checks out.
        """
        started = self.begin("data")
        try:
            # The dataset's own account of what it did goes to the data log, with the data commands' output.
            with open(self.logs / "data.log", "a", buffering=1) as out, contextlib.redirect_stdout(out):
                prepare(plan.data, s3=self.s3, bucket=self.run.bucket, run=lambda step: self.run_step(step))
            self.check_stop()
            restored = restore(self.run.resume, checkpoint, s3=self.s3, bucket=self.run.bucket, unit=unit)
            if restored.resumed:
                plan = resumed()
            fetch_pretrained(plan.pretrained, s3=self.s3, bucket=self.run.bucket)
            if plan.promoted is not None:
                fetch_promoted(plan.promoted, s3=self.s3, bucket=self.run.bucket)
        except (DatasetError, InputError) as e:
            raise self.failure(e) from e
        finally:
            self.upload_log("data")
        self.end("data", started, detail=restored.detail or self.start_detail(plan))
        return plan

    def start_detail(self, plan: Plan) -> str | None:
        """What a from=promoted run starts from, for the data phase's end."""
        if plan.promoted is not None:
            return f"starts from the promoted weights of job {plan.promoted.job_id}"
        if self.run.spec.params.from_ == "promoted":
            return "nothing promoted yet: starts from the pretrained weights"
        return None

    def final_metrics(self) -> FinalMetrics | None:
        """The scores the framework printed last (the evaluation's, else training's last), per class where it printed
        them: those of the weights the upload phase sends. None when neither step printed any."""
        for phase in ("evaluate", "train"):
            parser = self.parsers.get(phase)
            if parser is None:
                continue
            try:
                scores = FinalMetrics.model_validate(parser.summary()["metrics"])
            except ValidationError as e:
                log.warning("the %s step's last scores are out of range, not reported: %s", phase, e)
                return None
            if scores != NO_SCORES:
                return scores
        return None

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

    def upload_existing(self, plan: Plan | None) -> list[Artifact]:
        """The artifacts there are so far (a cancelled job's), none required; a failed upload is skipped."""
        artifacts: list[Artifact] = []
        for item in plan.artifacts if plan is not None else ():
            path = newest(item.path)
            if path is None:
                continue
            try:
                artifacts.append(self.uploader.upload_artifact(item.name, path))
            except Exception as e:
                log.warning("uploading the %s artifact %s failed: %s", item.name, path, e)
        return artifacts
