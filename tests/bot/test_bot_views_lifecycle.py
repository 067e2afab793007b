"""The card and replies through the spot lifecycle: attempts, interruptions, cancels, costs, caps, failure kinds."""

from __future__ import annotations

from typing import Any

import pytest

from bot import replies, views
from bot.rules import CancelRefused, CapReached
from spotter import catalog
from spotter.events import Artifact
from spotter.status import JobStatus
from spotter.store import Attempt, CancelRequest, Checkpoint, Failure
from tests.bot.test_bot_views import T0, URL, check_limits, record, running, shown

G5 = dict(instance_type="g5.xlarge", availability_zone="us-east-1b", market="spot", price_usd_hour=0.4)


def second_attempt(status: JobStatus = JobStatus.RUNNING, **fields: Any) -> Any:
    """A job whose first spot instance was reclaimed at epoch 8, now on its second attempt from epoch 7."""
    first = Attempt(
        number=1,
        instance_id="i-1",
        instance_type="g4dn.xlarge",
        availability_zone="us-east-1a",
        market="spot",
        price_usd_hour=0.2,
        started_at=T0,
        ended_at=T0 + 3600,
        ended_reason="interrupted",
        progress_at_end=8,
    )
    second = Attempt(number=2, instance_id="i-2", started_at=T0 + 3700, resumed_from=7, **G5)
    return running().model_copy(
        update={
            "status": status,
            "attempt": 2,
            "attempts": [first, second],
            "checkpoint": Checkpoint(key="k", sha256="0" * 64, size=1, current=7, attempt=1, at=T0 + 3500),
            **fields,
        }
    )


def buttons(message: views.Message) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_a_second_attempt_shows_its_instance_and_cost_so_far() -> None:
    card = views.job_card(second_attempt(), now=T0 + 7300)
    check_limits(card)
    text = shown(card)
    assert "g5.xlarge · spot · us-east-1b · $0.400/h · attempt 2" in text
    assert "$0.60 so far" in text  # 1 h at $0.20 + 1 h at $0.40


def test_an_interrupted_card_says_it_relaunches_and_from_where() -> None:
    first = second_attempt().attempts[0]
    rec = running().model_copy(
        update={
            "status": JobStatus.INTERRUPTED,
            "attempts": [first],
            "checkpoint": Checkpoint(key="k", sha256="0" * 64, size=1, current=7, attempt=1, at=T0),
        }
    )
    text = shown(views.job_card(rec, now=T0 + 3700))
    assert "Interrupted — relaunching" in text
    assert "Attempt 1 ended (spot interruption at epoch 8)" in text
    assert "resumes after epoch 7 from the last checkpoint" in text
    assert "ETA" not in text
    assert [b["action_id"] for b in buttons(views.job_card(rec, now=T0 + 3700))] == ["show_logs", "cancel_job"]

    waiting = rec.model_copy(update={"relaunch_at": T0 + 3700 + 120, "checkpoint": None})
    card = views.job_card(waiting, now=T0 + 3700)
    assert "Interrupted — next attempt in 2 min" in shown(card) and "next attempt in 2 min" in card["text"]
    assert "No checkpoint was saved: the next attempt starts from scratch" in shown(card)


@pytest.mark.parametrize("status", [s for s in JobStatus if not s.is_terminal()])
def test_every_active_card_has_a_confirmed_cancel_button(status: JobStatus) -> None:
    rec = running().model_copy(update={"status": status})
    [button] = [b for b in buttons(views.job_card(rec, now=T0)) if b["action_id"] == "cancel_job"]
    assert (button["action_id"], button["value"], button["style"]) == ("cancel_job", rec.job_id, "danger")
    assert {"title", "text", "confirm", "deny"} <= set(button["confirm"])


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_an_ended_card_has_no_cancel_button(status: JobStatus) -> None:
    rec = running().model_copy(update={"status": status})
    assert "cancel_job" not in shown(views.job_card(rec, now=T0))


def cancelled(by: str, **fields: Any) -> Any:
    rec = second_attempt(JobStatus.CANCELLED, finished_at=T0 + 7300, **fields)
    rec.attempts[1].ended_at = T0 + 7300
    rec.attempts[1].ended_reason = "cancelled"
    failure = Failure(phase="cancel", kind="cancelled", message=f"cancelled by <@{by}>")
    return rec.model_copy(update={"failure": failure, "cancel": CancelRequest(by=by, at=T0 + 7200)})


LAST = Artifact(name="last", key="jobs/x/artifacts/last.pt", sha256="ab" * 32, size=5_000_000)


def test_a_cancel_by_someone_else_tells_the_requester_and_links_the_weights_so_far() -> None:
    rec = cancelled("U0BOB", artifacts=[LAST])
    reply = replies.cancelled_reply(rec, now=T0 + 7400, weights=(LAST, URL))
    check_limits(reply)
    assert reply["text"].startswith(f"<@U0ALICE>, `{rec.job_id}` (shapes · yolov8n) was cancelled by <@U0BOB> at epoch")
    assert "Weights written so far: `last`, 5.0 MB" in reply["text"] and URL in reply["text"]
    assert [b["text"]["text"] for b in buttons(reply)] == ["Download weights so far"]
    assert "Cost $0.60, " in shown(reply) and "less than on-demand" in shown(reply)

    card = views.job_card(rec, now=T0 + 7400, weights_url=URL)
    assert "Cancelled by <@U0BOB> at epoch 7/20" in shown(card)
    assert [b["text"]["text"] for b in buttons(card)] == ["Download weights so far", "Logs"]
    assert "Failed" not in shown(card)


def test_a_cancel_by_the_requester_does_not_mention_them_twice_and_says_when_nothing_was_kept() -> None:
    reply = replies.cancelled_reply(cancelled("U0ALICE"), now=T0 + 7400, weights=None)
    assert reply["text"].count("<@U0ALICE>") == 1
    assert "No weights had been written yet." in reply["text"] and buttons(reply) == []


CAPACITY = (
    "*No instance for `shapes-abc234`* — spot: no capacity in any type × zone tried.\n*spot*\n"
    "• `g4dn.xlarge` in us-east-1a, us-east-1b; `g5.xlarge` in us-east-1a — InsufficientInstanceCapacity: "
    "We currently do not have sufficient g5.xlarge capacity &amp; more &lt;x&gt;"
)


@pytest.mark.parametrize(
    ("phase", "kind", "message", "says"),
    [
        (
            "launch",
            "capacity",
            CAPACITY,
            ["*No GPU capacity*", "`g4dn.xlarge` in us-east-1a, us-east-1b", "&amp; more"],
        ),
        ("launch", "quota", "Over quota L-3819A6DF", ["*Over the account's EC2 quota*"]),
        ("launch", "budget", "*Over the daily spend cap*: $101.00", ["*Over a Spotter cap*", "$101.00"]),
        ("watchdog", "heartbeat", "No heartbeat for 10 min", ["*Stopped by the watchdog: the agent went silent*"]),
        (
            "watchdog",
            "timeout",
            "ran 2.1 h, past `max_hours=2`",
            ["*Stopped by the watchdog: past the job's max_hours*"],
        ),
        ("watchdog", "launch", "did not start the agent", ["*Stopped by the watchdog: stuck launching*"]),
        ("train", "vanished", "Instance i-1 vanished", ["*The instance vanished with no checkpoint to resume from*"]),
        ("train", "attempts", "Gave up after 5 attempts", ["*Too many attempts*", "Gave up after 5 attempts"]),
        ("train", "oom", "CUDA out of memory", ["*Out of GPU memory*", "smaller `batch=`"]),
    ],
)
def test_failure_replies_read_well_for_each_kind(phase: str, kind: str, message: str, says: list[str]) -> None:
    rec = running(failure=Failure(phase=phase, kind=kind, message=message)).model_copy(
        update={"status": JobStatus.FAILED, "finished_at": T0 + 600}
    )
    reply = replies.failure_reply(rec, now=T0 + 700)
    check_limits(reply)
    for part in says:
        assert part in shown(reply), part
    assert reply["text"].startswith("<@U0ALICE> Failed in")
    assert "&amp;amp;" not in shown(reply), "an escaped message is not escaped twice"
    assert "<x>" not in shown(reply) + reply["text"]


def test_a_forged_mention_in_a_failure_or_a_note_cannot_broadcast() -> None:
    rec = running(failure=Failure(phase="launch", kind="capacity", message="<!channel> look")).model_copy(
        update={"status": JobStatus.FAILED}
    )
    reply = replies.failure_reply(rec, now=T0, note="also <!here>")
    assert "<!" not in shown(reply) and "<!" not in reply["text"]
    note = replies.note_reply(running(), "Attempt 2 resumes after epoch 3. <!everyone>", notify_requester=True)
    assert note["text"].startswith("<@U0ALICE> Attempt 2 resumes") and "<!" not in shown(note)


def test_job_cost_lists_each_attempt_total_saving_and_price_date() -> None:
    rec = second_attempt(JobStatus.SUCCEEDED, finished_at=T0 + 7300)
    rec.attempts[1].ended_at = T0 + 7300
    rec.attempts[1].ended_reason = "succeeded"
    message = views.job_cost_message(rec, now=T0 + 9000)
    check_limits(message)
    text = shown(message)
    assert (
        "*1.* `g4dn.xlarge` spot in us-east-1a · $0.200/h · 1 h 00 min · $0.20 · spot interruption at epoch 8" in text
    )
    assert "*2.* `g5.xlarge` spot in us-east-1b · $0.400/h · 1 h 00 min · $0.40 · succeeded" in text
    on_demand = catalog.GPU_TYPES["g4dn.xlarge"].on_demand_usd_hour + catalog.GPU_TYPES["g5.xlarge"].on_demand_usd_hour
    assert (
        f"*Total*: $0.60 for 2 h 00 min of instance time; on-demand ${on_demand:.2f}, saved ${on_demand - 0.6:.2f}"
        in text
    )
    assert catalog.PRICES_AS_OF in text
    assert "so far" not in text


def test_job_cost_of_a_running_job_and_of_one_that_never_got_an_instance() -> None:
    assert "*Total so far*" in shown(views.job_cost_message(second_attempt(), now=T0 + 7300))
    failed = record(JobStatus.FAILED, attempt=1, attempts=[Attempt(number=1, started_at=T0, ended_reason="failed")])
    text = shown(views.job_cost_message(failed, now=T0 + 60))
    assert "*1.* no instance (failed)" in text and "$0.000 for 0 s" in text


def test_channel_cost_sums_jobs_and_names_the_costliest() -> None:
    cheap = running().model_copy(update={"job_id": "shapes-cheap1"})
    dear = second_attempt()
    idle = record().model_copy(update={"job_id": "shapes-idle01"})
    message = views.channel_cost_message([cheap, dear, idle], now=T0 + 7300, days=30)
    check_limits(message)
    text = shown(message)
    # cheap: 7240 s at $0.1578/h; dear: 1 h at $0.20 + 1 h at $0.40 (one GPU each)
    assert "3 jobs, $0.92 for 4.0 GPU hours; on-demand" in text
    assert text.index(dear.job_id) < text.index("shapes-cheap1")
    assert idle.job_id not in text
    assert "No jobs in this channel in the last 30 days" in views.channel_cost_message([], T0, 30)["text"]


def test_cap_messages_name_the_cap_the_numbers_and_what_would_work() -> None:
    m = views.cap_message("shapes-abc234", CapReached("instances", 2, 2), ["shapes-run001"])
    for part in ("`shapes-abc234` was not started", "2 jobs are active", "`shapes-run001`", "cap is 2"):
        assert part in m["text"], part
    assert "`/train cancel <job>`" in m["text"] and "`MaxConcurrentInstances`" in m["text"]
    assert "Nothing was queued." in m["text"]
    m = views.cap_message("shapes-abc234", CapReached("spend", 101.5, 100), [])
    assert "$101.50 was spent today" in m["text"] and "daily cap is $100.00" in m["text"]
    assert "`MaxDailySpendUsd`" in m["text"] and "midnight UTC" in m["text"]


def test_cancel_answers() -> None:
    rec = running()
    assert "the agent uploads the weights written so far" in views.cancelling_message(rec)["text"]
    queued = record()
    assert "no instance is running it, so it ends now" in views.cancelling_message(queued)["text"]
    ended = views.cancel_refused_message(
        rec.model_copy(update={"status": JobStatus.SUCCEEDED, "artifacts": [LAST]}), CancelRefused("ended"), (), T0
    )
    assert f"Job `{rec.job_id}` already ended (Succeeded)" in ended["text"] and "/train weights" in ended["text"]
    who = views.cancel_refused_message(rec, CancelRefused("not_allowed"), {"U0ADMIN"}, T0)["text"]
    assert f"Only <@U0ALICE>, who started it, or an admin (<@U0ADMIN>) can cancel `{rec.job_id}`." in who
    nobody = views.cancel_refused_message(rec, CancelRefused("not_allowed"), (), T0)["text"]
    assert "Only <@U0ALICE>, who started it, can cancel" in nobody
    again = rec.model_copy(update={"cancel": CancelRequest(by="U0BOB", at=T0 - 120)})
    assert (
        "(<@U0BOB> asked 2 min ago)"
        in views.cancel_refused_message(again, CancelRefused("already_requested"), (), T0)["text"]
    )


def test_a_job_without_an_instance_shows_no_cost() -> None:
    rec = record(JobStatus.LAUNCHING, attempt=1, attempts=[Attempt(number=1, started_at=T0)])
    assert "$" not in shown(views.job_card(rec, now=T0 + 600))
