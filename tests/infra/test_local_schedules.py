"""Scheduler's delivery on the local stack: schedules kept in moto, fired on demand into an in-process handler."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from infra.local import schedules
from infra.local.invoke import Handler

GROUP = "spotter-test"
FUNCTION = "spotter-test-scheduled-run"
ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"
ROLE = "arn:aws:iam::123456789012:role/spotter-test-SchedulerRole"
WHEN = datetime(2026, 12, 7, 2, 0, 0, 123456, tzinfo=UTC)
RUN_INPUT = {
    "schedule_id": "nightly-persons",
    "dataset": "persons",
    "scheduled_time": "<aws.scheduler.scheduled-time>",
    "execution_id": "<aws.scheduler.execution-id>",
    "schedule_arn": "<aws.scheduler.schedule-arn>",
    "attempt": "<aws.scheduler.attempt-number>",
}


class Recorder:
    """The test's target function: keeps each event and context it is invoked with."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[dict[str, Any], Any]] = []
        self.fail = fail

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.calls.append((event, context))
        if self.fail:
            raise RuntimeError("the run could not start")
        return {"started": True, "job": f"persons-{len(self.calls)}"}


@pytest.fixture
def scheduler(aws: str) -> Any:
    client = boto3.client("scheduler", region_name="us-east-1")
    client.create_schedule_group(Name=GROUP)
    return client


def create(scheduler: Any, name: str, *, arn: str = ARN, state: str = "ENABLED", **extra: Any) -> None:
    target = {"Arn": arn, "RoleArn": ROLE, "Input": json.dumps(RUN_INPUT)}
    scheduler.create_schedule(
        Name=name,
        GroupName=GROUP,
        ScheduleExpression=extra.pop("expression", "cron(0 2 * * ? *)"),
        FlexibleTimeWindow={"Mode": "OFF"},
        Target=target,
        State=state,
        **extra,
    )


def targets(handler: Handler) -> schedules.TargetLookup:
    def lookup(arn: str) -> tuple[str, Any] | None:
        return (FUNCTION, lambda: handler) if arn == ARN else None

    return lookup


def test_moto_keeps_what_fire_reads_target_input_state_and_deletes(scheduler: Any) -> None:
    create(scheduler, "nightly")
    create(scheduler, "paused", state="DISABLED")

    got = scheduler.get_schedule(GroupName=GROUP, Name="nightly")
    listed = {s["Name"]: s["State"] for s in scheduler.list_schedules(GroupName=GROUP)["Schedules"]}
    scheduler.delete_schedule(GroupName=GROUP, Name="paused")

    assert got["Target"]["Arn"] == ARN
    assert json.loads(got["Target"]["Input"]) == RUN_INPUT
    assert got["Arn"] == f"arn:aws:scheduler:us-east-1:123456789012:schedule/{GROUP}/nightly"
    assert listed == {"nightly": "ENABLED", "paused": "DISABLED"}
    assert [s["Name"] for s in scheduler.list_schedules(GroupName=GROUP)["Schedules"]] == ["nightly"]


def test_scheduled_time_is_iso_8601_utc_to_the_second() -> None:
    assert schedules.scheduled_time(WHEN) == "2026-12-07T02:00:00Z"


def test_input_gets_the_context_attributes_json_escaped() -> None:
    context = {"schedule-arn": 'arn:with"quote', "scheduled-time": "2026-12-07T02:00:00Z"}
    text = json.dumps({"a": "<aws.scheduler.schedule-arn>", "t": "at <aws.scheduler.scheduled-time>", "n": 1})

    assert schedules.render_input(text, context) == {"a": 'arn:with"quote', "t": "at 2026-12-07T02:00:00Z", "n": 1}


def test_input_that_is_not_json_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Target\.Input is not JSON"):
        schedules.render_input("{not json", {})


def test_fire_all_runs_each_enabled_schedule_with_its_input_filled_in(scheduler: Any) -> None:
    create(scheduler, "nightly")
    create(scheduler, "weekly")
    create(scheduler, "paused", state="DISABLED")
    handler = Recorder()
    events: list[dict[str, Any]] = []

    fired = schedules.fire(scheduler, [GROUP], "all", targets(handler), events.append, now=WHEN)

    assert sorted(f.schedule for f in fired) == ["nightly", "weekly"]
    by_name = {event["schedule_arn"].rsplit("/", 1)[1]: (event, context) for event, context in handler.calls}
    assert set(by_name) == {"nightly", "weekly"}
    event, context = by_name["nightly"]
    assert event["scheduled_time"] == "2026-12-07T02:00:00Z"
    assert event["schedule_arn"] == f"arn:aws:scheduler:us-east-1:123456789012:schedule/{GROUP}/nightly"
    assert event["attempt"] == "1"
    assert uuid.UUID(event["execution_id"])
    assert (event["schedule_id"], event["dataset"]) == ("nightly-persons", "persons")
    assert context.function_name == FUNCTION
    assert context.invoked_function_arn == ARN
    # Each delivery is a run of its own.
    assert by_name["nightly"][0]["execution_id"] != by_name["weekly"][0]["execution_id"]
    assert sorted(e["schedule"] for e in events) == ["nightly", "weekly"]
    for e in events:
        assert e["aws"] == "schedule fired"
        assert e["function"] == FUNCTION
        assert e["scheduled_time"] == "2026-12-07T02:00:00Z"
        assert e["result"]["started"] is True
        assert "error" not in e


def test_fire_by_name_runs_that_one_only(scheduler: Any) -> None:
    create(scheduler, "nightly")
    create(scheduler, "weekly")
    handler = Recorder()
    events: list[dict[str, Any]] = []

    fired = schedules.fire(scheduler, [GROUP], "weekly", targets(handler), events.append, now=WHEN)

    assert [f.schedule for f in fired] == ["weekly"]
    assert [e["schedule"] for e in events] == ["weekly"]
    assert len(handler.calls) == 1


def test_a_disabled_schedule_named_alone_is_skipped_not_fired(scheduler: Any) -> None:
    create(scheduler, "paused", state="DISABLED")
    handler = Recorder()
    events: list[dict[str, Any]] = []

    fired = schedules.fire(scheduler, [GROUP], "paused", targets(handler), events.append)

    assert fired == [] and handler.calls == []
    assert events == [{"aws": "schedule skipped", "schedule": "paused", "group": GROUP, "state": "DISABLED"}]


def test_a_name_that_is_no_schedule_is_an_error_naming_the_schedules_there(scheduler: Any) -> None:
    create(scheduler, "nightly")
    handler = Recorder()

    with pytest.raises(schedules.ScheduleNotFound) as e:
        schedules.fire(scheduler, [GROUP], "nighty", targets(handler), lambda _: None)

    assert "no schedule named 'nighty'" in str(e.value)
    assert GROUP in str(e.value) and "nightly" in str(e.value)
    assert handler.calls == []


def test_fire_all_with_no_schedules_does_nothing(scheduler: Any) -> None:
    events: list[dict[str, Any]] = []

    assert schedules.fire(scheduler, [GROUP], "all", targets(Recorder()), events.append) == []
    assert events == []


def test_a_target_that_is_no_function_is_reported_and_the_others_still_fire(scheduler: Any) -> None:
    create(scheduler, "elsewhere", arn="arn:aws:lambda:us-east-1:123456789012:function:someone-else")
    create(scheduler, "nightly")
    handler = Recorder()
    events: list[dict[str, Any]] = []

    schedules.fire(scheduler, [GROUP], "all", targets(handler), events.append)

    failed = next(e for e in events if e["schedule"] == "elsewhere")
    assert failed["function"] is None and failed["result"] is None
    assert "is no function of this stack" in failed["error"]
    assert [e["schedule"] for e in events if "error" not in e] == ["nightly"]
    assert len(handler.calls) == 1


def test_a_handler_that_raises_is_reported_with_its_error(scheduler: Any) -> None:
    create(scheduler, "nightly")
    events: list[dict[str, Any]] = []

    (firing,) = schedules.fire(scheduler, [GROUP], "all", targets(Recorder(fail=True)), events.append)

    assert firing.error == "RuntimeError: the run could not start"
    assert events[0]["error"] == "RuntimeError: the run could not start"
    assert events[0]["function"] == FUNCTION


def test_a_one_time_schedule_that_deletes_itself_is_gone_after_it_fired(scheduler: Any) -> None:
    create(scheduler, "once", expression="at(2026-12-07T02:00:00)", ActionAfterCompletion="DELETE")
    create(scheduler, "kept", expression="at(2026-12-07T02:00:00)", ActionAfterCompletion="NONE")
    events: list[dict[str, Any]] = []

    schedules.fire(scheduler, [GROUP], "all", targets(Recorder()), events.append)

    assert [s["Name"] for s in scheduler.list_schedules(GroupName=GROUP)["Schedules"]] == ["kept"]
    assert {"aws": "schedule deleted", "schedule": "once", "group": GROUP, "why": "ActionAfterCompletion DELETE"} in (
        events
    )
