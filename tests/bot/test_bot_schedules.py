"""Schedules in EventBridge Scheduler (moto): created once, listed by channel with their next run, deleted."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from bot.schedules import ScheduledRun, ScheduleError, Schedules, ScheduleSettings, next_run

TARGET = "arn:aws:lambda:us-east-1:123456789012:function:spotter-scheduled-run"
ROLE = "arn:aws:iam::123456789012:role/spotter-SchedulerRole"


def _run(schedule_id: str = "persons-yolov4-k3m9", channel: str = "C1", **kw: str) -> ScheduledRun:
    values = {
        "schedule_id": schedule_id,
        "dataset": "persons",
        "model": "yolov4",
        "options": [("iterations", "2000")],
        "channel": channel,
        "requested_by": "U1",
        "label": "daily 02:00",
        "expression": "cron(0 2 * * ? *)",
        "timezone": "Europe/Berlin",
        **kw,
    }
    return ScheduledRun.model_validate(values)


@pytest.fixture
def schedules(aws: str) -> Schedules:
    boto3.client("scheduler").create_schedule_group(Name="spotter")
    return Schedules("spotter", TARGET, ROLE)


def test_a_schedule_keeps_the_run_and_scheduler_fills_in_the_time(schedules: Schedules) -> None:
    made = schedules.create(_run())
    assert made.next_run is not None and (made.next_run.hour, made.next_run.minute) == (2, 0)
    got = boto3.client("scheduler").get_schedule(Name="persons-yolov4-k3m9", GroupName="spotter")
    assert got["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert got["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert got["Target"]["Arn"] == TARGET and got["Target"]["RoleArn"] == ROLE
    run = ScheduledRun.model_validate_json(got["Target"]["Input"])
    assert run.scheduled_time == "<aws.scheduler.scheduled-time>"
    assert run.options == [("iterations", "2000")]
    # Two deliveries of one run name the same job; the next night's run another.
    fired = run.model_copy(update={"scheduled_time": "2026-12-08T01:00:00Z"})
    assert fired.seed == run.model_copy(update={"scheduled_time": "2026-12-08T01:00:00Z"}).seed
    assert fired.seed != run.model_copy(update={"scheduled_time": "2026-12-09T01:00:00Z"}).seed


def test_the_same_request_again_finds_its_schedule(schedules: Schedules) -> None:
    first = schedules.create(_run())
    again = schedules.create(_run())
    assert again.schedule_id == first.schedule_id
    assert [s.schedule_id for s in schedules.list()] == [first.schedule_id]


def test_listing_is_per_channel_soonest_first_and_delete_removes(schedules: Schedules) -> None:
    schedules.create(_run("persons-yolov4-late", label="daily 23:00", expression="cron(0 23 * * ? *)", timezone="UTC"))
    schedules.create(_run("persons-yolov4-aaaa", label="daily 00:00", expression="cron(0 0 * * ? *)", timezone="UTC"))
    schedules.create(_run("persons-yolov4-else", channel="C2"))
    listed = schedules.list("C1")
    assert {s.schedule_id for s in listed} == {"persons-yolov4-late", "persons-yolov4-aaaa"}
    assert listed[0].next_run is not None and listed[1].next_run is not None
    assert listed[0].next_run <= listed[1].next_run
    schedules.delete("persons-yolov4-late")
    assert [s.schedule_id for s in schedules.list("C1")] == ["persons-yolov4-aaaa"]
    assert schedules.get("persons-yolov4-late") is None
    schedules.delete("persons-yolov4-late")  # deleting what is gone is no error


def test_a_schedule_not_made_by_spotter_is_never_shown(schedules: Schedules) -> None:
    boto3.client("scheduler").create_schedule(
        Name="by-hand",
        GroupName="spotter",
        ScheduleExpression="rate(1 day)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": TARGET, "RoleArn": ROLE, "Input": '{"hello": 1}'},
    )
    assert schedules.list() == []


def test_unconfigured_schedules_say_so() -> None:
    with pytest.raises(ScheduleError, match="not set up"):
        Schedules.from_settings(ScheduleSettings())


NOW = datetime(2026, 12, 7, 5, 30, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("expression", "timezone", "expected"),
    [
        ("cron(0 2 * * ? *)", "UTC", "2026-12-08T02:00:00+00:00"),
        ("cron(45 5 * * ? *)", "UTC", "2026-12-07T05:45:00+00:00"),
        ("cron(0 2 * * ? *)", "Europe/Berlin", "2026-12-08T02:00:00+01:00"),
        ("cron(0 2 ? * MON *)", "UTC", "2026-12-14T02:00:00+00:00"),
        ("cron(0 2 ? * 2 *)", "UTC", "2026-12-14T02:00:00+00:00"),  # Scheduler's day 2 is Monday
        ("cron(0 2 ? * SUN *)", "UTC", "2026-12-13T02:00:00+00:00"),
        ("cron(0/15 * * * ? *)", "UTC", "2026-12-07T05:45:00+00:00"),
        ("cron(0 9 1 JAN ? *)", "UTC", "2027-01-01T09:00:00+00:00"),
        ("cron(0 9 1-5 * ? 2028)", "UTC", "2028-01-01T09:00:00+00:00"),
        ("at(2026-12-24T18:00:00)", "UTC", "2026-12-24T18:00:00+00:00"),
    ],
)
def test_next_run(expression: str, timezone: str, expected: str) -> None:
    got = next_run(expression, timezone, after=NOW)
    assert got is not None and got.isoformat() == expected


@pytest.mark.parametrize(
    ("expression", "timezone"),
    [
        ("cron(0 2 L * ? *)", "UTC"),  # last day of the month: not computed here
        ("cron(0 2 * * ? 2020)", "UTC"),  # only in the past
        ("at(2020-01-01T00:00:00)", "UTC"),
        ("cron(0 2 * * ?)", "UTC"),
        ("cron(0 2 * * ? *)", "Mars/Olympus"),
    ],
)
def test_no_next_run(expression: str, timezone: str) -> None:
    assert next_run(expression, timezone, after=NOW) is None
