"""One job attempt end to end: the spec from S3, the recipe's plan phase by phase, the spot watcher and the
checkpoint sync beside it, events on the bus, power off.

Exactly one account of how the attempt ended reaches the bus — JobFinished or JobError from the phases, or
JobInterrupted or JobCancelled from the watcher — and whoever gives it uploads the logs, flushes the events and
powers the machine off. Whatever happens, those last steps run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from agent import image, recipes
from agent.attempt import (
    MESSAGE_MAX,
    Attempt,
    Machine,
    PhaseFailed,
    Stopped,
    agent_path,
    clip,
    identify,
    last_lines,
    phase_env,
)
from agent.checkpoints import CheckpointSync, Synced
from agent.emitter import Emitter, EventSink
from agent.imds import Imds, ImdsError
from agent.plan import Plan
from agent.recipes import Recipe, RecipeError
from agent.reporter import Reporter
from agent.runner import KILL_GRACE_SECONDS, Terminated
from agent.uploader import Uploader
from agent.watcher import IMDS_TIMEOUT_SECONDS, SpotWatcher, read_control
from spotter import layout
from spotter.aws import client, instance_arn
from spotter.events import Bus, JobCancelled, JobError, JobEvent, JobFinished, JobInterrupted, to_eventbridge
from spotter.spec import RunSpec

log = logging.getLogger("agent")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# How long the agent waits for queued events to reach the bus before powering off.
FLUSH_TIMEOUT_SECONDS = 60.0
# After a spot notice EC2 takes the machine two minutes later: everything below fits well inside.
INTERRUPTION_BUDGET_SECONDS = 100.0
STOP_WAIT_SECONDS = KILL_GRACE_SECONDS + 5.0  # the trainer's group: SIGTERM, grace, SIGKILL
CHECKPOINT_WAIT_SECONDS = 60.0
NOTICE_FLUSH_SECONDS = 20.0
# A phase still holding on after the watcher ended the attempt (an in-process download) is not waited for.
ENDING_WAIT_SECONDS = 300.0


def read_run_spec(s3: Any, url: str) -> RunSpec:
    bucket, key = layout.parse_s3_uri(url)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return RunSpec.model_validate_json(body)


class Ending:
    """Who ends the attempt: the first to claim it reports and powers off, the others only wait for that."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: str | None = None
        self.done = threading.Event()

    def claim(self, who: str) -> bool:
        with self._lock:
            if self.owner is not None:
                return False
            self.owner = who
            return True

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.done.is_set() and time.monotonic() < deadline:
            try:
                self.done.wait(min(1.0, deadline - time.monotonic()))
            except Terminated:
                continue  # the machine is going down as asked: the owner is finishing the report


class JobRun:
    """One attempt and what stands beside it; its methods for the watcher are the `watcher.Actions`."""

    def __init__(
        self,
        run: RunSpec,
        workdir: Path,
        *,
        s3: Any,
        emitter: Emitter,
        imds: Imds,
        outputs: layout.Outputs,
        poweroff: Callable[[], None],
        clock: Callable[[], float],
        python: str,
        started: float,
    ) -> None:
        self.run = run
        self.job_id = run.spec.job_id
        self.workdir = workdir
        self.s3 = s3
        self.emitter = emitter
        self.imds = imds
        self.poweroff = poweroff
        self.clock = clock
        self.python = python
        self.started = started
        self.reporter = Reporter(emitter, self.job_id, run.attempt, clock=clock)
        self.outputs = outputs
        self.uploader = Uploader(s3, run.bucket, outputs, run.attempt)
        self.attempt = Attempt(
            run,
            workdir,
            s3=s3,
            reporter=self.reporter,
            uploader=self.uploader,
            env=phase_env(os.environ),
            clock=clock,
            deadline=started + run.spec.params.max_hours * 3600,
        )
        self.ending = Ending()
        self.plan: Plan | None = None
        self.sync: CheckpointSync | None = None
        self.watcher: SpotWatcher | None = None

    # -- the phases (main thread) -------------------------------------------------------------------------------

    def main(self) -> int:
        """Run the attempt; 0 if it succeeded, 1 if not (failed, interrupted or cancelled)."""
        self.reporter.start_heartbeat()
        final: JobEvent | None = None
        status = 1
        try:
            if self.cancelled_at_start():
                return 1
            self.watcher = SpotWatcher(
                self,
                imds=Imds(self.imds.endpoint, timeout=IMDS_TIMEOUT_SECONDS),
                s3=self.s3,
                bucket=self.run.bucket,
                job_id=self.job_id,
            ).start()
            final = self.phases()
            status = 0
        except Stopped:
            final = None
        except PhaseFailed as e:
            final = self.error(e.kind, e.message, e.last_lines)
        except Terminated as e:
            final = self.error("killed", f"the agent was stopped by {e} during {self.attempt.phase}")
        except Exception as e:
            log.exception("agent crashed during %s", self.attempt.phase)
            message = f"agent crashed during {self.attempt.phase}: {type(e).__name__}: {e}"
            final = self.error("crash", clip(message, MESSAGE_MAX), last_lines(traceback.format_exc().splitlines()))
        if not self.ending.claim("phases"):
            self.ending.wait(ENDING_WAIT_SECONDS)
            return 1
        try:
            if self.watcher is not None:
                self.watcher.stop()
            if isinstance(final, JobError) and final.phase == "train":
                self.keep_checkpoint(CHECKPOINT_WAIT_SECONDS)
            elif self.sync is not None:
                self.sync.stop(CHECKPOINT_WAIT_SECONDS)
            if final is not None:
                self.end(final)
            self.attempt.upload_log(self.attempt.phase)
        except Terminated:
            log.warning("stopped while reporting how the attempt ended")
        finally:
            self.finish("succeeded" if status == 0 else "failed", FLUSH_TIMEOUT_SECONDS)
        return status

    def cancelled_at_start(self) -> bool:
        """A job cancelled while its machine booted runs nothing."""
        try:
            control = read_control(self.s3, self.run.bucket, self.job_id)
        except Exception as e:
            log.warning("cannot read %s at the start: %s", layout.control(self.job_id), e)
            return False
        if control is None or not self.ending.claim("cancel"):
            return False
        log.warning("the job was cancelled by %s before it started: running nothing", control.by or "someone")
        self.end(self.reporter.event(JobCancelled, artifacts=[]))
        self.finish("cancelled", FLUSH_TIMEOUT_SECONDS)
        return True

    def error(self, kind: str, message: str, lines: list[str] | None = None) -> JobError:
        return JobError(
            job_id=self.job_id,
            attempt=self.run.attempt,
            phase=self.attempt.phase,
            kind=kind,
            message=message,
            last_lines=lines or [],
        )

    def phases(self) -> JobFinished:
        log.info(
            "job %s attempt %d: %s %s (agent %s)",
            self.job_id,
            self.run.attempt,
            self.run.spec.dataset,
            self.run.spec.model,
            agent_path(),
        )
        machine = identify(self.imds)
        recipe = recipes.load(self.run.spec.recipe)
        try:
            plan = self.plan = self.render(recipe, machine)
        except RecipeError as e:
            raise PhaseFailed("exit", str(e)) from e
        self.check_image(recipe, machine)
        attempt = self.attempt
        if plan.install is not None:
            attempt.step_phase(plan.install, plan.parser)
        if plan.build is not None:
            attempt.build(plan, machine)
        checkpoint = (
            None
            if recipe.resume is None
            else recipes.restored_checkpoint(self.workdir, PurePosixPath(recipe.resume.checkpoint).suffix)
        )
        plan = self.plan = attempt.data(
            plan, lambda: self.render(recipe, machine, resume=True), checkpoint, recipe.unit
        )
        if plan.resume_from is not None:
            self.sync = CheckpointSync(
                plan.resume_from.path,
                uploader=self.uploader,
                reporter=self.reporter,
                staging=self.workdir / ".checkpoint-sync",
            ).start()
        attempt.step_phase(plan.train, plan.parser)
        if self.sync is not None:
            # Training is over: the weights now go up as artifacts.
            self.sync.stop(CHECKPOINT_WAIT_SECONDS)
        if plan.evaluate is not None:
            attempt.step_phase(plan.evaluate, plan.parser)
        artifacts = attempt.upload(plan)
        return JobFinished(
            job_id=self.job_id,
            attempt=self.run.attempt,
            artifacts=artifacts,
            seconds=round(self.clock() - self.started, 3),
            metrics=attempt.final_metrics(),
        )

    def check_image(self, recipe: Recipe, machine: Machine) -> None:
        """What the recipe needs of the image, before anything is installed: an image without it fails the job at
        once, saying what is missing, rather than an hour into a build."""
        log.info("recipes run with %s", self.python)
        try:
            found = image.check(
                recipe.name,
                recipe.image,
                python=self.python,
                gpu=machine.gpu_arch is not None,
                env=self.attempt.env,
                cwd=self.workdir,
            )
        except image.ImageUnfit as e:
            for line in e.lines:
                log.error("image: %s", line)
            raise PhaseFailed("image", e.message, e.lines) from e
        for line in found.lines():
            log.info("image: %s", line)

    def render(self, recipe: Recipe, machine: Machine, resume: bool = False) -> Plan:
        return recipe.render(
            self.run,
            workdir=self.workdir,
            python=self.python,
            gpu_arch=machine.gpu_arch,
            cpus=os.cpu_count() or 1,
            resume=resume,
        )

    # -- the watcher's actions (its threads) --------------------------------------------------------------------

    def interrupt(self, action: str, notice_at: float) -> None:
        """EC2 takes the machine in two minutes: stop training, keep its checkpoint, say so, power off."""
        if self.attempt.phase in ("evaluate", "upload"):
            # Training is done: the weights going up now are the job's result, and they fit in the notice.
            log.warning("interruption notice (%s) after training: finishing the %s phase", action, self.attempt.phase)
            return
        if not self.ending.claim("interruption"):
            return
        began = self.clock()
        try:
            self.stop_trainer()
            left = INTERRUPTION_BUDGET_SECONDS - (self.clock() - began) - NOTICE_FLUSH_SECONDS
            synced = self.keep_checkpoint(max(5.0, left))
            self.end(
                self.reporter.event(
                    JobInterrupted,
                    action=action,
                    notice_at=notice_at,
                    checkpoint=None if synced is None else synced.artifact,
                    current=None if synced is None else synced.current,
                )
            )
            self.attempt.upload_log(self.attempt.phase)
        except Exception:
            log.exception("saving the attempt after the interruption notice failed")
        finally:
            self.finish("interrupted", NOTICE_FLUSH_SECONDS)

    def cancel(self, by: str) -> None:
        """Someone cancelled the job: stop training, upload what there is, say so, power off."""
        if not self.ending.claim("cancel"):
            return
        try:
            self.stop_trainer()
            if self.sync is not None:
                self.sync.stop(CHECKPOINT_WAIT_SECONDS)
            artifacts = self.attempt.upload_existing(self.plan)
            self.end(self.reporter.event(JobCancelled, artifacts=artifacts))
            self.attempt.upload_log(self.attempt.phase)
        except Exception:
            log.exception("wrapping up the cancelled attempt failed")
        finally:
            self.finish("cancelled", FLUSH_TIMEOUT_SECONDS)

    def end(self, event: JobEvent) -> None:
        """Say how the attempt ended, on the bus and in S3: recovery reads it there if the instance is gone before
        the bus delivers it, and does not take the attempt for vanished. Both are done before the power goes off."""
        stamped = self.emitter.offer(event)
        try:
            self.s3.put_object(
                Bucket=self.run.bucket,
                Key=self.outputs.attempt_end(self.run.attempt),
                Body=json.dumps(to_eventbridge(stamped)).encode(),
                ContentType="application/json",
            )
        except Exception as e:
            log.warning("keeping how the attempt ended in S3 failed (the bus still gets it): %s", e)

    def rebalance(self) -> None:
        if self.sync is not None:
            self.sync.sync_now()
        else:
            log.info("no checkpoint to sync yet")

    def stop_trainer(self) -> None:
        self.attempt.stop.set()
        if not self.attempt.idle.wait(STOP_WAIT_SECONDS):
            log.warning("the %s phase had not stopped after %.0fs", self.attempt.phase, STOP_WAIT_SECONDS)

    def keep_checkpoint(self, timeout: float) -> Synced | None:
        """The newest checkpoint, uploaded (or the one synced before, if that upload fails)."""
        if self.sync is None:
            return None
        return self.sync.final(timeout)

    # -- the end ------------------------------------------------------------------------------------------------

    def finish(self, how: str, flush_timeout: float) -> None:
        """The agent's log to S3, the events to the bus, power off: once, by whoever ended the attempt."""
        try:
            self.reporter.stop_heartbeat()
            if self.watcher is not None:
                self.watcher.stop()
            log.info(
                "job %s attempt %d %s after %.1fs", self.job_id, self.run.attempt, how, self.clock() - self.started
            )
            self.attempt.upload_log("agent")
            if not self.emitter.close(flush_timeout):
                log.error("powering off with events the bus never got")
        finally:
            self.ending.done.set()
            self.poweroff()


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
    # The agent's own log goes to S3 with the phase logs, whatever the process's logging setup is.
    handler = logging.FileHandler(workdir / "logs" / "agent.log")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    agent_log = logging.getLogger("agent")
    agent_log.addHandler(handler)
    if agent_log.level == logging.NOTSET:
        agent_log.setLevel(logging.INFO)
    try:
        started = clock()
        try:
            run = read_run_spec(s3 or client("s3"), spec_url)
            if run.spec.job_id != job_id:
                raise ValueError(f"{spec_url} is the spec of job {run.spec.job_id}, not {job_id}")
        except Exception:
            # Without the spec there is no bus to report to: the control plane's watchdog notices the silence.
            log.exception("cannot read the job spec %s", spec_url)
            poweroff()
            return 1
        s3 = s3 or client("s3", run.region)
        emitter = Emitter(bus or Bus(run.bus_name, client("events", run.region))).start()
        imds = imds or Imds()
        try:
            outputs = layout.Outputs(job_id, instance_arn(run.region, imds.instance_id()))
        except (ImdsError, ClientError, BotoCoreError, ValueError) as e:
            # The instance role writes only below the instance's own ARN: without it nothing could be kept.
            log.error("cannot tell which instance this is: %s", e)
            emitter.offer(
                JobError(
                    job_id=job_id,
                    attempt=run.attempt,
                    phase="install",
                    kind="launch",
                    message=f"this machine could not say which EC2 instance it is ({e}): the agent keeps the job's "
                    "outputs under the instance's ARN, from its instance metadata (IMDSv2) and STS",
                )
            )
            if not emitter.close(FLUSH_TIMEOUT_SECONDS):
                log.error("powering off with events the bus never got")
            poweroff()
            return 1
        job = JobRun(
            run,
            workdir,
            s3=s3,
            emitter=emitter,
            imds=imds,
            outputs=outputs,
            poweroff=poweroff,
            clock=clock,
            python=python,
            started=started,
        )
        return job.main()
    finally:
        agent_log.removeHandler(handler)
        handler.close()
