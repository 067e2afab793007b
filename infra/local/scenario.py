"""Scenario files for `python -m infra.local run`: a YAML list of steps, validated before anything runs.

Each step is a mapping named by its first key; unknown keys are errors. `{job}` in a slash text and
`job: last` stand for the job this scenario created last (by a slash command or a schedule); `{schedule}` in a
slash text for the schedule it created last.

    - slash: "/train shapes yolov8n epochs=2"   # a signed slash command, as Slack posts it
      user: U0ALICE                             # optional (default U0ALICE)
      channel: C0TRAINING                       # optional (default C0TRAINING)
      signature: valid                          # valid | bad | stale | missing | replay
      retry: 2                                  # Slack re-sends it 2 more times (X-Slack-Retry-Num 1, 2)
    - click: {button: cancel, job: last, user: U0ALICE, channel: C0TRAINING, double: false}
                                                # a click on the job card's button: cancel | logs | download
    - wait: {job: last, status: SUCCEEDED, timeout: 600, at_progress: 0.5}
    - sleep: 5
    - fire_schedule: all                        # or one schedule's name: deliver it now, as Scheduler would
    - inject: {spot_interruption: {job: last, at_progress: 0.5}}   # and the other faults below

A step that cannot be done (a wait that times out or ends elsewhere, a schedule or a button that is not
there) prints a `{"scenario": …}` line saying why, and the run stops with exit status 1.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.local.stack import DEFAULT_CHANNEL, DEFAULT_USER, LocalStack, StepFailed
from spotter.status import JobStatus


class ScenarioError(ValueError):
    pass


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Slash(_Step):
    slash: str = Field(min_length=1)
    user: str = DEFAULT_USER
    channel: str = DEFAULT_CHANNEL
    signature: Literal["valid", "bad", "stale", "missing", "replay"] = "valid"
    retry: int = Field(0, ge=0, le=10)  # Slack's re-sends of the same request after a late ack

    @model_validator(mode="after")
    def _retried_as_sent(self) -> Slash:
        if self.retry and self.signature != "valid":
            raise ValueError("Slack retries only what it sent: `retry` needs `signature: valid`")
        return self


ButtonName = Literal["cancel", "logs", "download"]  # the names of infra.local.interactivity.BUTTONS


class ClickOn(_Step):
    button: ButtonName
    job: str = "last"
    user: str = DEFAULT_USER
    channel: str | None = None  # where the card is (default: the job's channel)
    double: bool = False  # two clicks in quick succession


class Click(_Step):
    click: ClickOn


class FireSchedule(_Step):
    fire_schedule: str = Field(min_length=1, pattern=r"^[0-9A-Za-z_.-]+$")  # `all` or one schedule's name


class WaitFor(_Step):
    job: str = "last"
    status: JobStatus
    timeout: float = Field(600, gt=0)
    at_progress: float | None = Field(None, ge=0, le=1)  # and training has reached this fraction


class Wait(_Step):
    wait: WaitFor


class Sleep(_Step):
    sleep: float = Field(ge=0)


class SlackFault(_Step):
    method: str
    status: int | None = Field(None, ge=400, le=599)
    retry_after: int | None = Field(None, ge=0)
    for_seconds: float | None = Field(None, gt=0)
    times: int | None = Field(None, ge=1)
    hang_seconds: float | None = Field(None, gt=0)


class JobFault(_Step):
    """Something happens to a job's instance once its training has reached `at_progress` (a fraction)."""

    job: str = "last"
    at_progress: float = Field(0.5, ge=0, le=1)
    timeout: float = Field(600, gt=0)


class CapacityFault(_Step):
    instance_types: list[str] = Field(default_factory=list)  # none: every type
    market: Literal["spot", "on-demand", "any"] = "spot"
    code: Literal["InsufficientInstanceCapacity", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"] = (
        "InsufficientInstanceCapacity"
    )


class S3Fault(_Step):
    operation: str = Field(pattern=r"^(\*|[A-Z][A-Za-z0-9]+)$")
    status: int = Field(500, ge=400, le=599)
    times: int | None = Field(None, ge=1)
    for_seconds: float | None = Field(None, gt=0)
    hang_seconds: float | None = Field(None, gt=0)


class Injection(_Step):
    """Exactly one fault."""

    slack: SlackFault | None = None
    spot_interruption: JobFault | None = None
    instance_vanishes: JobFault | None = None
    kill_agent: JobFault | None = None
    capacity_error: CapacityFault | None = None
    s3: S3Fault | None = None

    @model_validator(mode="after")
    def _one(self) -> Injection:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"inject one fault per step, got {len(given)}: {', '.join(given) or 'none'}")
        return self


class Inject(_Step):
    inject: Injection


Step = Annotated[Slash | Click | Wait | Sleep | FireSchedule | Inject, Field()]
_STEP_TYPES: dict[str, type[_Step]] = {
    "slash": Slash,
    "click": Click,
    "wait": Wait,
    "sleep": Sleep,
    "fire_schedule": FireSchedule,
    "inject": Inject,
}


def load(path: Path) -> list[_Step]:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ScenarioError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{path}: a scenario is a non-empty YAML list of steps")
    steps: list[_Step] = []
    for i, item in enumerate(raw, 1):
        if not isinstance(item, dict) or not item:
            raise ScenarioError(f'step {i}: a step is a mapping such as `slash: "/train …"`')
        kind = next(iter(item))
        cls = _STEP_TYPES.get(kind)
        if cls is None:
            raise ScenarioError(f"step {i}: unknown step `{kind}` (steps: {', '.join(_STEP_TYPES)})")
        try:
            steps.append(cls.model_validate(item))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ScenarioError(f"step {i} ({kind}): {where}: {err['msg']}") from None
    return steps


def run(stack: LocalStack, steps: list[_Step]) -> int:
    """Run the steps on a started stack; 0 when every step ran, 1 when a step failed (a wait, a click, a
    schedule), after a `{"scenario": …}` line saying which and why."""

    def job_ref(ref: str) -> str:
        if ref != "last":
            return ref
        if not stack.jobs:
            raise ScenarioError("`job: last` but no job was created yet")
        return stack.jobs[-1]

    for number, step in enumerate(steps, 1):
        try:
            code = _run_step(stack, step, job_ref)
        except StepFailed as e:
            kind = next(iter(type(step).model_fields))
            stack.emit({"scenario": f"{kind} failed", "step": number, "error": str(e)})
            return 1
        if code:
            return code
    return 0


def _run_step(stack: LocalStack, step: _Step, job_ref: Any) -> int:
    """One step; 1 when a wait failed (StepFailed when another step could not be done), else 0."""
    if isinstance(step, Slash):
        text = step.slash
        if "{job}" in text:
            text = text.replace("{job}", job_ref("last"))
        if "{schedule}" in text:
            if not stack.schedules:
                raise StepFailed("`{schedule}` but no schedule was created yet")
            text = text.replace("{schedule}", stack.schedules[-1])
        command, _, rest = text.partition(" ")
        stack.slash(
            rest,
            user=step.user,
            channel=step.channel,
            signature=step.signature,
            command=command,
            retry=step.retry,
        )
    elif isinstance(step, Click):
        c = step.click
        stack.click(c.button, job=job_ref(c.job), user=c.user, channel=c.channel, double=c.double)
    elif isinstance(step, FireSchedule):
        stack.fire_schedule(step.fire_schedule)
    elif isinstance(step, Wait):
        job = job_ref(step.wait.job)
        try:
            stack.wait(job, step.wait.status, step.wait.timeout, at_progress=step.wait.at_progress)
        except (TimeoutError, ValueError) as e:
            stack.emit({"scenario": "wait failed", "job": job, "error": str(e)})
            return 1
    elif isinstance(step, Sleep):
        time.sleep(step.sleep)
    elif isinstance(step, Inject):
        inject(stack, step.inject, job_ref)
    return 0


def inject(stack: LocalStack, fault: Injection, job_ref: Any) -> None:
    if fault.slack is not None:
        f = fault.slack
        stack.slack.fail(
            f.method,
            status=f.status or 500,
            retry_after=f.retry_after,
            for_seconds=f.for_seconds,
            times=f.times,
            hang_seconds=f.hang_seconds,
        )
        stack.emit({"scenario": "injected", "slack": f.model_dump(exclude_none=True)})
    elif fault.capacity_error is not None:
        c = fault.capacity_error
        stack.faults.no_capacity(c.instance_types, c.market, c.code)
        stack.emit({"scenario": "injected", "capacity_error": c.model_dump()})
    elif fault.s3 is not None:
        f3 = fault.s3
        stack.faults.s3_error(
            f3.operation, f3.status, times=f3.times, for_seconds=f3.for_seconds, hang_seconds=f3.hang_seconds
        )
        stack.emit({"scenario": "injected", "s3": f3.model_dump(exclude_none=True)})
    else:
        for kind in ("spot_interruption", "instance_vanishes", "kill_agent"):
            job_fault: JobFault | None = getattr(fault, kind)
            if job_fault is not None:
                job = job_ref(job_fault.job)
                stack.emit({"scenario": "armed", kind: {**job_fault.model_dump(), "job": job}})
                threading.Thread(
                    target=_at_progress, args=(stack, kind, job, job_fault), name=f"inject-{kind}", daemon=True
                ).start()


def _at_progress(stack: LocalStack, kind: str, job: str, fault: JobFault) -> None:
    """Wait until the job's first attempt has trained `at_progress` of its length, then do it to its instance."""
    deadline = time.monotonic() + fault.timeout
    while time.monotonic() < deadline:
        rec = stack.store.get(job)
        if rec.status.is_terminal():
            stack.emit({"scenario": "not injected", "fault": kind, "job": job, "why": f"the job ended {rec.status}"})
            return
        fraction = rec.progress.fraction if rec.progress else None
        attempt = rec.current_attempt
        host = stack.hosts.host_for_job(job)
        if (
            fraction is not None
            and fraction >= fault.at_progress
            and attempt is not None
            and host is not None
            and host.instance_id == attempt.instance_id
            and not host.terminated
        ):
            stack.emit(
                {
                    "scenario": "injected",
                    "fault": kind,
                    "job": job,
                    "instance_id": host.instance_id,
                    "progress": rec.progress.current if rec.progress else None,
                }
            )
            if kind == "spot_interruption":
                stack.hosts.interrupt(host)
            elif kind == "instance_vanishes":
                stack.hosts.vanish(host)
            else:
                stack.hosts.kill_agent(host)
            return
        time.sleep(0.1)
    stack.emit({"scenario": "not injected", "fault": kind, "job": job, "why": f"not at {fault.at_progress} in time"})


def summary_line(stack: LocalStack) -> dict[str, Any]:
    """The final state, once the stack has settled; the stack reports nothing after it."""
    stack.settle()
    final = stack.final()
    stack.mute()
    return {"final": final}
