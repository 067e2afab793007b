"""Nightly retrains: one EventBridge Scheduler schedule per `/train schedule`, in the stack's schedule group.

A schedule's target is the scheduled-run function (bot.scheduled) with a `ScheduledRun` as its input: the same job
spec a `/train` would make, the channel to post its card in, and who set it up. Scheduler fills in the time the run
was due and the execution id, so a retried delivery of one run names the same job and never starts a second.
Schedules hold all there is to know about themselves (no table of our own that could disagree with Scheduler).
"""

from __future__ import annotations

import calendar
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spotter.aws import client

# Scheduler's context attributes, replaced in the target input at each run.
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
EXECUTION_ID = "<aws.scheduler.execution-id>"
# A run Scheduler could not deliver is retried for an hour, then dropped (its next night comes anyway).
TARGET_RETRY = {"MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 3600}


class ScheduleError(Exception):
    """A schedule that cannot be made, found or removed; the message says why in words for the channel."""


class ScheduledRun(BaseModel):
    """What a schedule hands the scheduled-run function at each run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule_id: str
    dataset: str
    model: str
    options: list[tuple[str, str]] = Field(default_factory=list)
    channel: str
    requested_by: str
    label: str
    expression: str
    timezone: str = "UTC"
    scheduled_time: str = SCHEDULED_TIME
    execution_id: str = EXECUTION_ID

    @property
    def seed(self) -> str:
        """The same run of the same schedule always names the same job (a redelivery finds it)."""
        return f"schedule:{self.schedule_id}:{self.scheduled_time}"


@dataclass(frozen=True)
class Schedule:
    run: ScheduledRun
    state: str
    next_run: datetime | None

    @property
    def schedule_id(self) -> str:
        return self.run.schedule_id


class ScheduleSettings(BaseModel):
    """Where schedules go and what they run (`SPOTTER_SCHEDULE_GROUP`, `…_TARGET_ARN`, `SPOTTER_SCHEDULER_ROLE_ARN`)."""

    model_config = ConfigDict(frozen=True)

    schedule_group: str = ""
    schedule_target_arn: str = ""
    scheduler_role_arn: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ScheduleSettings:
        env = os.environ if environ is None else environ
        return cls(**{name: env.get(f"SPOTTER_{name.upper()}", "") for name in cls.model_fields})

    @property
    def configured(self) -> bool:
        return bool(self.schedule_group and self.schedule_target_arn and self.scheduler_role_arn)


class Schedules:
    """Create, list and delete the schedules of the stack's group."""

    @classmethod
    def from_settings(cls, settings: ScheduleSettings, region: str | None = None) -> Schedules:
        if not settings.configured:
            raise ScheduleError("Schedules are not set up in this deployment (its schedule group is not configured).")
        return cls(settings.schedule_group, settings.schedule_target_arn, settings.scheduler_role_arn, region)

    def __init__(self, group: str, target_arn: str, role_arn: str, region: str | None = None) -> None:
        self.group = group
        self.target_arn = target_arn
        self.role_arn = role_arn
        self.scheduler = client("scheduler", region)

    def create(self, run: ScheduledRun) -> Schedule:
        """The schedule for `run`; the same request again (a Slack retry) finds the one it made."""
        try:
            self.scheduler.create_schedule(
                Name=run.schedule_id,
                GroupName=self.group,
                ScheduleExpression=run.expression,
                ScheduleExpressionTimezone=run.timezone,
                FlexibleTimeWindow={"Mode": "OFF"},
                State="ENABLED",
                Description=f"/train {run.dataset} {run.model} {run.label} in {run.channel}"[:512],
                Target={
                    "Arn": self.target_arn,
                    "RoleArn": self.role_arn,
                    "Input": run.model_dump_json(),
                    "RetryPolicy": TARGET_RETRY,
                },
            )
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code == "ConflictException":
                existing = self.get(run.schedule_id)
                if existing is not None and existing.run.channel == run.channel:
                    return existing
            if code == "ValidationException":
                raise ScheduleError(f"Scheduler refused the schedule: {e.response['Error'].get('Message', '')}") from e
            raise
        return Schedule(run, "ENABLED", next_run(run.expression, run.timezone))

    def get(self, schedule_id: str) -> Schedule | None:
        try:
            got = self.scheduler.get_schedule(Name=schedule_id, GroupName=self.group)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise
        try:
            run = ScheduledRun.model_validate_json(got["Target"]["Input"])
        except (KeyError, ValidationError):
            return None  # not one of ours (made by hand in the group): never shown, never run as a job
        return Schedule(run, str(got.get("State", "ENABLED")), next_run(run.expression, run.timezone))

    def list(self, channel: str | None = None) -> list[Schedule]:
        """The group's schedules (of `channel` if given), soonest next run first."""
        found: list[Schedule] = []
        for name in self._names():
            s = self.get(name)
            if s is not None and (channel is None or s.run.channel == channel):
                found.append(s)
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(found, key=lambda s: (s.next_run or far, s.schedule_id))

    def delete(self, schedule_id: str) -> None:
        try:
            self.scheduler.delete_schedule(Name=schedule_id, GroupName=self.group)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise

    def _names(self) -> Iterator[str]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"GroupName": self.group, "MaxResults": 100}
            if token:
                kwargs["NextToken"] = token
            page = self.scheduler.list_schedules(**kwargs)
            for item in page.get("Schedules", []):
                yield str(item["Name"])
            token = page.get("NextToken")
            if not token:
                return


# -- when a cron(…) runs next ------------------------------------------------------------------------------

_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}  # Scheduler: 1 is Sunday
_CRON = re.compile(r"^cron\((.+)\)$")
_AT = re.compile(r"^at\((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\)$")
HORIZON_DAYS = 366 * 5


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int] | None:
    """The values of one cron field; None for `*`/`?` (any). Raises ValueError for what is not computable."""
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        else:
            lo_text, _, hi_text = base.partition("-")
            start = _value(lo_text, names)
            end = _value(hi_text, names) if hi_text else (high if step_text else start)
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise ValueError(f"{part} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number")
    return int(text)


def next_run(expression: str, timezone: str, after: datetime | None = None) -> datetime | None:
    """When the schedule runs next (aware, in its time zone), or None when it will not (or `L`/`W`/`#` forms)."""
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    now = (after or datetime.now(UTC)).astimezone(tz)
    at = _AT.match(expression)
    if at:
        when = datetime.fromisoformat(at.group(1)).replace(tzinfo=tz)
        return when if when > now else None
    m = _CRON.match(expression.strip())
    if not m:
        return None
    fields = m.group(1).split()
    if len(fields) != 6:
        return None
    try:
        minutes = _field(fields[0], 0, 59) or set(range(60))
        hours = _field(fields[1], 0, 23) or set(range(24))
        dom = _field(fields[2], 1, 31)
        months = _field(fields[3], 1, 12, _MONTHS)
        dow = _field(fields[4], 1, 7, _DAYS)
        years = _field(fields[5], 1970, 2199)
    except ValueError:
        return None
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.date()
    for _ in range(HORIZON_DAYS):
        weekday = (day.isoweekday() % 7) + 1  # Sunday 1 … Saturday 7
        if (
            (years is None or day.year in years)
            and (months is None or day.month in months)
            and (dom is None or day.day in dom)
            and (dow is None or weekday in dow)
        ):
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
                    if candidate >= start:
                        return candidate
        day += timedelta(days=1)
    return None
