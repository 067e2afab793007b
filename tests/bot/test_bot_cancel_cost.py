"""`/train cancel`, the card's Cancel button, `/train cost` and the caps at `/train`, through the Slack function."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from spotter import catalog
from spotter.events import JobLaunched
from spotter.status import JobStatus
from tests.bot.conftest import CHANNEL, TEAM, USER, Bench, function_url_event
from tests.bot.test_bot_app import queued_job, succeed

BOB, ADMIN = "U0BOB", "U0ADMIN"


def answers(bench: Bench, user: str = USER) -> list[str]:
    return [m.text for m in bench.slack.ephemerals(CHANNEL, user)]


def cancel_requests(bench: Bench) -> list[dict[str, Any]]:
    return [e["detail"] for e in bench.bus_events() if e["detail-type"] == "Job Cancel Requested"]


def running_job(bench: Bench, *, hours_ago: float = 0.5, price: float = 0.2, user: str = USER) -> str:
    """A job on a spot instance that started `hours_ago`, as the launcher and the agent would have left it."""
    job = queued_job(bench.slash("shapes yolov8n", user=user))
    bench.store.mark_launching(job, 1)
    bench.store.record_launch(
        JobLaunched(
            job_id=job,
            attempt=1,
            instance_id="i-0abc",
            instance_type="g4dn.xlarge",
            availability_zone="us-east-1a",
            market="spot",
            price_usd_hour=price,
            at=time.time() - hours_ago * 3600,
        )
    )
    bench.store.mark_running(job, 1)
    bench.bus_events()  # drop the Job Queued
    return job


@pytest.fixture
def admins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTTER_ADMINS", f"{ADMIN},U0OTHER")


def test_the_requester_cancels_and_the_control_plane_is_asked(bench: Bench) -> None:
    job = running_job(bench)
    assert bench.slash(f"cancel {job}")["body"] == ""  # the decision needs the table: the lazy listener answers
    assert answers(bench)[-1] == (
        f"Cancelling `{job}`: the agent uploads the weights written so far, then the instance is terminated."
    )
    [request] = cancel_requests(bench)
    assert (request["job_id"], request["attempt"], request["by"]) == (job, 1, USER)
    assert bench.store.get(job).status is JobStatus.RUNNING, "the bot never changes the job's status itself"


def test_another_user_may_not_cancel_but_an_admin_may(bench: Bench, admins: None) -> None:
    job = running_job(bench)
    bench.slash(f"cancel {job}", user=BOB)
    assert (
        f"Only <@{USER}>, who started it, or an admin (<@{ADMIN}>, <@U0OTHER>) can cancel `{job}`."
        in (answers(bench, BOB)[-1])
    )
    assert cancel_requests(bench) == []
    bench.slash(f"cancel {job}", user=ADMIN)
    assert answers(bench, ADMIN)[-1].startswith(f"Cancelling `{job}`")
    assert [r["by"] for r in cancel_requests(bench)] == [ADMIN]


def test_an_ended_job_or_another_channels_job_is_not_cancelled(bench: Bench) -> None:
    job = queued_job(bench.slash("shapes yolov8n"))
    succeed(bench, job)
    bench.bus_events()
    bench.slash(f"cancel {job}")
    assert answers(bench)[-1].startswith(f"Job `{job}` already ended (Succeeded).")
    assert f"`/train weights {job}`" in answers(bench)[-1]
    other = queued_job(bench.slash("shapes yolov8n", channel="C0PRIVATE"))
    bench.bus_events()
    bench.slash(f"cancel {other}")
    assert f"There is no job `{other}` in this channel" in answers(bench)[-1]
    assert cancel_requests(bench) == []


def test_a_queued_job_is_cancelled_at_once_by_the_control_plane(bench: Bench) -> None:
    job = queued_job(bench.slash("shapes yolov8n"))
    bench.bus_events()
    bench.slash(f"cancel {job}")
    assert answers(bench)[-1] == f"Cancelling `{job}`: no instance is running it, so it ends now."
    assert [r["job_id"] for r in cancel_requests(bench)] == [job]


def button_click(bench: Bench, job: str, user: str) -> str:
    """The block_actions payload Slack posts when `user` confirms the card's Cancel button."""
    ts = bench.store.get(job).slack.card_ts  # type: ignore[union-attr]
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "spotter"},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A0SPOTTER",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL, "is_ephemeral": False},
        "trigger_id": "1.2.3",
        "channel": {"id": CHANNEL, "name": "training"},
        "response_url": bench.slack.new_response_url("cancel_job", CHANNEL, user),
        "actions": [
            {
                "action_id": "cancel_job",
                "block_id": "actions",
                "type": "button",
                "value": job,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Cancel"},
                "action_ts": str(time.time()),
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def test_the_cancel_button_goes_through_the_same_decision(bench: Bench) -> None:
    job = running_job(bench)
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    [button] = [e for b in card.blocks if b["type"] == "actions" for e in b["elements"]]
    assert (button["action_id"], button["value"]) == ("cancel_job", job) and "confirm" in button

    resp = bench.post(function_url_event(button_click(bench, job, BOB)))
    bench.settle()
    assert resp["statusCode"] == 200
    assert f"Only <@{USER}>, who started it, can cancel `{job}`." in answers(bench, BOB)[-1]
    assert cancel_requests(bench) == []

    assert bench.post(function_url_event(button_click(bench, job, USER)))["statusCode"] == 200
    bench.settle()
    assert answers(bench)[-1].startswith(f"Cancelling `{job}`: the agent uploads")
    assert [(r["job_id"], r["by"]) for r in cancel_requests(bench)] == [(job, USER)]
    assert [m.ts for m in bench.slack.messages(CHANNEL) if m.thread_ts is None] == [card.ts], "the card stays"


def test_an_unsigned_button_click_is_refused(bench: Bench) -> None:
    job = running_job(bench)
    forged = function_url_event(button_click(bench, job, USER), secret="not-the-signing-secret")
    assert bench.post(forged)["statusCode"] == 401
    bench.settle()
    assert cancel_requests(bench) == [] and answers(bench) == []


def test_cost_of_a_job_and_of_the_channel(bench: Bench) -> None:
    job = running_job(bench, hours_ago=2.0, price=0.2)
    bench.slash(f"cost {job}")
    said = answers(bench)[-1]
    assert said.startswith(f"Cost of {job}: $0.40 so far; on-demand $1.05, saved $0.65 (62%).")
    [message] = bench.slack.ephemerals(CHANNEL, USER)[-1:]
    text = json.dumps(message.blocks)
    assert "`g4dn.xlarge` spot in us-east-1a \\u00b7 $0.200/h \\u00b7 2 h 00 min \\u00b7 $0.40 \\u00b7 running" in text
    assert catalog.PRICES_AS_OF in text

    bench.slash("cost")
    assert answers(bench)[-1].startswith("This channel, last 30 days: 1 job, $0.40 for 2.0 GPU hours;")
    bench.slash("cost", channel="C0EMPTY")
    assert [m.text for m in bench.slack.ephemerals("C0EMPTY", USER)] == [
        "No jobs in this channel in the last 30 days: nothing spent."
    ]


def test_a_job_over_the_instance_cap_is_refused_and_not_recorded(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTTER_MAX_CONCURRENT_INSTANCES", "1")
    first = running_job(bench)
    second = queued_job(bench.slash("shapes yolov8n epochs=2"))
    said = answers(bench)[-1]
    assert said.startswith(f"`{second}` was not started: 1 jobs are active (in this channel: `{first}`)")
    assert "`MaxConcurrentInstances`" in said and "`/train cancel <job>`" in said and "Nothing was queued." in said
    assert bench.job_ids() == [first] and bench.bus_events() == []
    assert len([m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]) == 1, "no second card"


def test_a_job_over_the_daily_spend_cap_is_refused(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPOTTER_MAX_DAILY_SPEND_USD", "1")
    first = running_job(bench, hours_ago=0.1, price=20.0)  # $2 so far today
    bench.store.mark_cancelled(first, USER)  # ended: the instance cap is clear, the money is spent
    second = queued_job(bench.slash("shapes yolov8n"))
    said = answers(bench)[-1]
    assert said.startswith(f"`{second}` was not started: $2.00 was spent today (since 00:00 UTC)")
    assert "daily cap is $1.00" in said and "`MaxDailySpendUsd`" in said
    assert bench.job_ids() == [first]


def test_a_replayed_train_request_under_a_full_cap_is_still_a_replay(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTTER_MAX_CONCURRENT_INSTANCES", "1")
    event = function_url_event(bench.slash_body("shapes yolov8n"))
    job = queued_job(bench.post(event))
    bench.settle()
    bench.post(event)  # its own job fills the cap: a replay is recognised before the caps are looked at
    bench.settle()
    assert bench.job_ids() == [job] and not any("not started" in a for a in answers(bench))
