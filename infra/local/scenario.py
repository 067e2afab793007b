"""Scenario files for `python -m infra.local run`: a YAML list of steps, validated before anything runs.

Each step is a mapping named by its first key (`slash`, `wait`, `sleep`, `inject`, `fire_schedule`);
unknown keys are errors. `{job}` in a slash text and `job: last` stand for the job created last.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.local.stack import DEFAULT_CHANNEL, DEFAULT_USER, LocalStack
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


Step = Annotated[Slash | Wait | Sleep | Inject, Field()]
_STEP_TYPES: dict[str, type[_Step]] = {"slash": Slash, "wait": Wait, "sleep": Sleep, "inject": Inject}
_LATER = {"fire_schedule": "schedules"}


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
            if kind in _LATER:
                raise ScenarioError(f"step {i}: `{kind}` is not supported by this local stack yet")
            raise ScenarioError(f"step {i}: unknown step `{kind}` (steps: {', '.join(_STEP_TYPES)})")
        try:
            steps.append(cls.model_validate(item))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ScenarioError(f"step {i} ({kind}): {where}: {err['msg']}") from None
    return steps


def run(stack: LocalStack, steps: list[_Step]) -> int:
    """Run the steps on a started stack; 0 when every step ran, 1 when a wait failed."""

    def job_ref(ref: str) -> str:
        if ref != "last":
            return ref
        if not stack.jobs:
            raise ScenarioError("`job: last` but no job was created yet")
        return stack.jobs[-1]

    for step in steps:
        if isinstance(step, Slash):
            text = step.slash
            if "{job}" in text:
                text = text.replace("{job}", job_ref("last"))
            command, _, rest = text.partition(" ")
            stack.slash(rest, user=step.user, channel=step.channel, signature=step.signature, command=command)
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
    stack.settle()
    return {"final": stack.final()}
