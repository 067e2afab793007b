"""EventBridge Scheduler's delivery, on demand: the schedules stored in moto are fired when a scenario says so.

moto keeps schedules (create, list, get, delete) but never fires them. `fire` does what Scheduler does when a
schedule is due: it takes the schedule's Target.Input, fills in Scheduler's context attributes
(`<aws.scheduler.schedule-arn>`, `<aws.scheduler.scheduled-time>`, `<aws.scheduler.execution-id>`,
`<aws.scheduler.attempt-number>`), and invokes the target function with it as the event. Disabled schedules
are not fired; a one-time `at(…)` schedule whose ActionAfterCompletion is DELETE is deleted once it fired.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.local.invoke import Handler, LambdaContext

Emit = Callable[[dict[str, Any]], None]
# The function a target ARN names: (function name, its handler), or None when there is no such function.
# Importing a handler can fail (the module is broken): that failure is the invocation's, reported as such.
TargetLookup = Callable[[str], tuple[str, Callable[[], Handler]] | None]

ALL = "all"


class ScheduleNotFound(LookupError):
    """A schedule named by a scenario is in none of the stack's schedule groups."""


@dataclass(frozen=True)
class Firing:
    """One delivery of a schedule: what was sent where, and what came back (or why nothing did)."""

    schedule: str
    group: str
    function: str | None
    scheduled_time: str
    event: Any
    result: Any = None
    error: str | None = None


def scheduled_time(now: datetime | None = None) -> str:
    """Scheduler's `<aws.scheduler.scheduled-time>`: ISO 8601 in UTC to the second, e.g. 2026-12-07T02:00:00Z."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def render_input(text: str, context: dict[str, str]) -> Any:
    """Target.Input with the context attributes put in, parsed as the JSON the target receives.

    The attributes stand inside JSON strings (`"<aws.scheduler.scheduled-time>"`), so the values are put in
    JSON-escaped. Raises ValueError when the result is not JSON (a Lambda target would refuse the payload).
    """
    for name, value in context.items():
        text = text.replace(f"<aws.scheduler.{name}>", json.dumps(value)[1:-1])
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"Target.Input is not JSON once the context attributes are in: {e}") from None


def _schedules(scheduler: Any, groups: Iterable[str]) -> list[tuple[str, str, str]]:
    """(group, name, state) of every schedule in the groups, oldest first within a group."""
    found: list[tuple[str, str, str]] = []
    for group in groups:
        listed: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"GroupName": group}
        while True:
            page = scheduler.list_schedules(**kwargs)
            listed.extend(page.get("Schedules", []))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        listed.sort(key=lambda s: (_created(s), s["Name"]))
        found.extend((group, s["Name"], str(s.get("State") or "ENABLED")) for s in listed)
    return found


def _created(summary: dict[str, Any]) -> float:
    created = summary.get("CreationDate")
    return created.timestamp() if isinstance(created, datetime) else 0.0


def fire(
    scheduler: Any,
    groups: list[str],
    which: str,
    targets: TargetLookup,
    emit: Emit,
    *,
    now: datetime | None = None,
) -> list[Firing]:
    """Deliver the schedules `which` names (`all`, or one schedule's name) now, as Scheduler would.

    Each delivery is reported to `emit` as `{"aws": "schedule fired", "schedule", "function", "scheduled_time",
    "result"}` (with "error" when the target could not be invoked or raised). A disabled schedule named on its
    own is reported as skipped. Raises ScheduleNotFound when `which` names no schedule in `groups`.
    """
    listed = _schedules(scheduler, groups)
    if which == ALL:
        chosen = [(g, n) for g, n, state in listed if state == "ENABLED"]
    else:
        named = [(g, n, state) for g, n, state in listed if n == which]
        if not named:
            there = ", ".join(n for _, n, _ in listed) or "none"
            raise ScheduleNotFound(
                f"no schedule named {which!r} in schedule group {', '.join(groups) or '(none)'} (schedules: {there})"
            )
        chosen = []
        for g, n, state in named:
            if state == "ENABLED":
                chosen.append((g, n))
            else:
                emit({"aws": "schedule skipped", "schedule": n, "group": g, "state": state})
    return [_fire_one(scheduler, group, name, targets, emit, now) for group, name in chosen]


def _fire_one(scheduler: Any, group: str, name: str, targets: TargetLookup, emit: Emit, now: datetime | None) -> Firing:
    schedule = scheduler.get_schedule(GroupName=group, Name=name)
    target = schedule.get("Target") or {}
    when = scheduled_time(now)
    context = {
        "schedule-arn": str(schedule["Arn"]),
        "scheduled-time": when,
        "execution-id": str(uuid.uuid4()),
        "attempt-number": "1",
    }
    function: str | None = None
    event: Any = None
    try:
        event = render_input(str(target.get("Input") or "{}"), context)
        found = targets(str(target.get("Arn") or ""))
        if found is None:
            raise LookupError(f"Target.Arn {target.get('Arn')!r} is no function of this stack")
        function, load = found
        result = load()(event, LambdaContext(function_name=function))
        firing = Firing(name, group, function, when, event, result=result)
    except Exception as e:  # the invocation failed: Scheduler reports it and goes on with the next schedule
        firing = Firing(name, group, function, when, event, error=f"{type(e).__name__}: {e}")
    record: dict[str, Any] = {
        "aws": "schedule fired",
        "schedule": name,
        "function": firing.function,
        "scheduled_time": when,
        "result": firing.result,
    }
    if firing.error is not None:
        record["error"] = firing.error
    emit(record)
    expression = str(schedule.get("ScheduleExpression") or "")
    if expression.startswith("at(") and schedule.get("ActionAfterCompletion") == "DELETE":
        scheduler.delete_schedule(GroupName=group, Name=name)
        emit({"aws": "schedule deleted", "schedule": name, "group": group, "why": "ActionAfterCompletion DELETE"})
    return firing
