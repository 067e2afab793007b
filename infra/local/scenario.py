"""Scenario files for `python -m infra.local run`: a YAML list of steps, validated before anything runs.

Each step is a mapping named by its first key (`slash`, `wait`, `sleep`, `inject`, `fire_schedule`);
unknown keys are errors. `{job}` in a slash text and `job: last` stand for the job created last.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class Injection(_Step):
    slack: SlackFault


class Inject(_Step):
    inject: Injection


Step = Annotated[Slash | Wait | Sleep | Inject, Field()]
_STEP_TYPES: dict[str, type[_Step]] = {"slash": Slash, "wait": Wait, "sleep": Sleep, "inject": Inject}
_LATER = {"fire_schedule": "schedules", "inject": "this kind of injection"}


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
            if kind == "inject" and isinstance(item.get("inject"), dict) and set(item["inject"]) - {"slack"}:
                other = ", ".join(sorted(set(item["inject"]) - {"slack"}))
                raise ScenarioError(f"step {i}: injecting `{other}` is not supported by this local stack yet") from None
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
                stack.wait(job, step.wait.status, step.wait.timeout)
            except (TimeoutError, ValueError) as e:
                stack.emit({"scenario": "wait failed", "job": job, "error": str(e)})
                return 1
        elif isinstance(step, Sleep):
            time.sleep(step.sleep)
        elif isinstance(step, Inject):
            f = step.inject.slack
            stack.slack.fail(
                f.method,
                status=f.status or 500,
                retry_after=f.retry_after,
                for_seconds=f.for_seconds,
                times=f.times,
                hang_seconds=f.hang_seconds,
            )
            stack.emit({"scenario": "injected", "slack": f.model_dump(exclude_none=True)})
    return 0


def summary_line(stack: LocalStack) -> dict[str, Any]:
    stack.settle()
    return {"final": stack.final()}
