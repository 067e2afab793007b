"""The notifier end to end: `Job Changed` deliveries through `bot.notifier.handler` → the job record → the channel.

The control plane is the one writer of job state; these tests play its part as the recorder does: an agent or
launcher event goes through `spotter.lifecycle.apply`, and what changed goes to the notifier as `Job Changed`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from typing import Any

import boto3
import pytest
import requests
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

import bot.notifier
import bot.slack
from bot.notifier import EndNotShown
from infra.local.invoke import LambdaContext
from infra.local.slack import PNG_SIGNATURE, File
from spotter import lifecycle
from spotter.config import BotSettings
from spotter.events import (
    Artifact,
    JobCancelled,
    JobCancelRequested,
    JobChanged,
    JobError,
    JobEvent,
    JobFinished,
    JobInterrupted,
    JobLaunched,
    JobMetric,
    JobPhase,
    JobProgress,
    from_eventbridge,
)
from spotter.status import JobStatus
from spotter.store import Failure
from tests.bot.conftest import BUCKET, CHANNEL, SAMPLE_INSTANCE, USER, Bench, bus_event, load_event, outputs

CONTEXT: Any = LambdaContext(function_name="spotter-notifier")
INTERVAL = 0.4
SLACK_SLOP = 0.05  # a call is recorded a moment after the window was taken


@pytest.fixture
def interval() -> float:
    """The card's window (a test parametrizes it to have a longer one)."""
    return INTERVAL


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch, interval: float) -> list[float]:
    """The waits for the card's window (really slept: the store's clock is the real one)."""
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        assert seconds <= interval + 1e-6, "a wait is bounded by the interval"
        waited.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(bot.notifier, "SLEEP", sleep)
    return waited


@pytest.fixture
def job(bench: Bench, monkeypatch: pytest.MonkeyPatch, sleeps: list[float], interval: float) -> str:
    """A job queued from Slack (its card in the channel) that the launcher has started launching."""
    monkeypatch.setenv("SPOTTER_CARD_INTERVAL_SECONDS", str(interval))
    bench.slash("shapes yolov8n")
    [job_id] = bench.job_ids()
    bench.store.mark_launching(job_id, 1)
    return job_id


def on_its_instance(bench: Bench, job: str) -> None:
    """The launcher has the job's instance (the job_launched sample's): what its agent reports is taken."""
    bench.store.record_launch(
        JobLaunched(job_id=job, instance_id=SAMPLE_INSTANCE, instance_type="g4dn.xlarge", market="spot")
    )


def changed_delivery(ev: JobChanged) -> dict[str, Any]:
    """EventBridge delivering `ev` to the notifier's rule (the sample's envelope, this event's detail)."""
    event = load_event("job_changed")
    event["detail"] = json.loads(ev.model_dump_json())
    event["resources"] = [f"spotter:job/{ev.job_id}"]
    return event


def notify(ev: JobChanged) -> None:
    bot.notifier.handler(changed_delivery(ev), CONTEXT)


class Recorder:
    """The recorder's part: apply an event to the record, and tell the notifier what changed (kept in `sent`)."""

    def __init__(self, bench: Bench, job: str) -> None:
        self.bench, self.job = bench, job
        self.sent: list[JobChanged] = []

    def __call__(self, name: str | JobEvent, **detail: Any) -> None:
        """An event of the sample kind `name` (with detail overrides), or the event itself."""
        ev = (
            name
            if isinstance(name, JobEvent)
            else from_eventbridge(
                bus_event(name, job_id=self.job, **{"at": time.time(), **detail})  # the samples' `at` is long ago
            )
        )
        outcome = lifecycle.apply(self.bench.store, ev)
        phase = ev.phase if isinstance(ev, JobPhase) else None
        cached = isinstance(ev, JobPhase) and ev.state == "cached"
        changed = lifecycle.changed_event(outcome, ev.detail_type, phase=phase, cached=cached)
        if changed is not None:
            self.sent.append(changed)
            notify(changed)


@pytest.fixture
def deliver(bench: Bench, job: str) -> Recorder:
    return Recorder(bench, job)


def replies(bench: Bench, job: str) -> list[str]:
    ref = bench.store.get(job).slack
    assert ref is not None
    return [m.text for m in bench.slack.thread(CHANNEL, ref.thread_ts)]


def thread_files(bench: Bench, job: str) -> list[File]:
    ref = bench.store.get(job).slack
    assert ref is not None
    return [f for m in bench.slack.thread(CHANNEL, ref.thread_ts) for f in m.files]


def card_updates(bench: Bench) -> list[float]:
    return [c.at for c in bench.slack.calls_to("chat.update") if c.status == 200]


def run_until_training(deliver: Recorder) -> None:
    deliver("job_launched")
    deliver("job_phase", seq=1, phase="install", state="started")
    for i, seq in enumerate(range(2, 7), start=1):
        deliver("job_progress", seq=seq, current=i, total=20, loss=2.0 / i)
    deliver("job_metric", seq=7, current=5, map50=0.61, map50_95=0.40)
    deliver("job_metric", seq=8, current=6, map50=0.55, map50_95=0.38)  # not a new best: no reply


def finish(bench: Bench, deliver: Recorder, job: str) -> bytes:
    weights = b"best.pt bytes"
    key = outputs(job).artifact("best", ".pt")
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=weights)
    deliver("job_phase", seq=9, phase="upload", state="started")
    deliver("job_finished", seq=10, artifacts=[{"name": "best", "key": key, "sha256": "0" * 64, "size": len(weights)}])
    return weights


# A window long enough that a status change lands in it even when deliveries are slow on a loaded machine.
@pytest.mark.parametrize("interval", [2.0])
def test_a_job_from_launch_to_weights(
    bench: Bench, job: str, deliver: Recorder, sleeps: list[float], interval: float
) -> None:
    run_until_training(deliver)
    weights = finish(bench, deliver, job)

    rec = bench.store.get(job)
    assert rec.status is JobStatus.SUCCEEDED and rec.best is not None and rec.best.map50 == 0.61
    said = replies(bench, job)
    assert [s.removeprefix(f"<@{USER}> ").split(":")[0].split(" ")[0] for s in said[:4]] == [
        "install",
        "New",
        "upload",
        "Done",
    ]
    assert said[3].startswith(f"<@{USER}> Done:"), "the requester is told the job succeeded"
    assert "New best mAP50 0.610" in said[1]
    assert "mAP50 0.550 final, 0.610 best" in said[3] and "of instance time" in said[3]
    # the chart follows the result: loss and mAP50 over the epochs, a PNG
    assert len(said) == 5 and said[4].startswith(":chart_with_upwards_trend: Training loss and mAP50 over the epochs")
    [shared] = thread_files(bench, job)
    assert shared.name == f"{job}-chart.png" and shared.content.startswith(PNG_SIGNATURE)

    # the card: never twice within the interval; status changes and the end waited for their window
    updates = card_updates(bench)
    assert len(updates) >= 3
    assert all(b - a >= interval - SLACK_SLOP for a, b in itertools.pairwise(updates)), updates
    assert sleeps, "a status change waited for the card's window"
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    assert "Succeeded" in card.text
    button = next(e for b in card.blocks if b["type"] == "actions" for e in b["elements"])
    assert button["text"]["text"] == "Download weights"
    assert requests.get(button["url"], timeout=10).content == weights


@pytest.mark.parametrize("interval", [2.0])
def test_progress_inside_the_window_is_skipped_and_caught_up(bench: Bench, job: str, deliver: Recorder) -> None:
    deliver("job_launched")
    deliver("job_phase", seq=1, phase="train", state="started")  # LAUNCHING → RUNNING: waits for the window
    drawn = len(card_updates(bench))
    for seq in range(2, 12):
        deliver("job_progress", seq=seq, current=seq, total=20)
    assert len(card_updates(bench)) == drawn  # all inside the window (ten deliveries take well under 2 s)
    deliver("job_phase", seq=12, phase="upload", state="started")  # RUNNING → UPLOADING: waits, and catches up
    assert len(card_updates(bench)) == drawn + 1
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    assert "Uploading" in card.text and "epoch 11/20" in card.text


def test_an_error_fails_the_job_with_the_last_lines(bench: Bench, job: str, deliver: Recorder) -> None:
    deliver("job_launched")
    deliver("job_phase", seq=1, phase="install", state="started")
    deliver("job_error")
    rec = bench.store.get(job)
    assert rec.status is JobStatus.FAILED and rec.failure is not None and rec.failure.kind == "oom"
    ref = rec.slack
    assert ref is not None
    failure = bench.slack.thread(CHANNEL, ref.thread_ts)[-1]
    assert failure.text.startswith(f"<@{USER}> Failed in train (oom): Out of GPU memory. CUDA out of memory")
    log = failure.blocks[1]["text"]["text"]
    assert log.startswith("Last lines of the log:\n```") and "torch.OutOfMemoryError" in log
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    assert "Failed" in card.text


def test_repeated_and_late_events_change_nothing_in_slack(bench: Bench, job: str, deliver: Recorder) -> None:
    run_until_training(deliver)
    said = replies(bench, job)
    calls = len(bench.slack.calls)
    deliver("job_progress", seq=3, current=2, total=20)  # older than what the record has
    deliver("job_metric", seq=7, current=5, map50=0.61, map50_95=0.40)  # again
    assert len(bench.slack.calls) == calls
    deliver("job_phase", seq=1, phase="install", state="started")  # again: at most a redraw of the card
    deliver("job_launched")  # again
    assert replies(bench, job) == said

    finish(bench, deliver, job)
    said, calls = replies(bench, job), len(bench.slack.calls)
    deliver("job_finished", seq=10, artifacts=[{"name": "best", "key": "k", "sha256": "0" * 64, "size": 1}])
    deliver("job_error", seq=11)
    deliver("job_progress", seq=12, current=20, total=20)
    deliver("job_phase", seq=1, phase="install", state="started")  # a phase the thread has heard of
    assert deliver.sent[-1].status == "SUCCEEDED", "late events after the end tell the notifier nothing"
    notify(deliver.sent[-1])  # EventBridge delivering the end's `Job Changed` twice
    assert len(bench.slack.calls) == calls and replies(bench, job) == said
    assert bench.store.get(job).status is JobStatus.SUCCEEDED


def test_a_phase_delivered_after_the_end_reaches_the_thread_once(bench: Bench, job: str, deliver: Recorder) -> None:
    run_until_training(deliver)
    finish(bench, deliver, job)
    said, card = replies(bench, job), bench.slack.calls_to("chat.update")[-1]

    late = JobPhase(job_id=job, attempt=1, seq=2, phase="build", state="cached")  # overtaken by the end
    deliver(late)
    deliver(late)  # EventBridge delivering it again
    notify(deliver.sent[-1])  # and its `Job Changed` twice

    assert replies(bench, job) == [*said, "build restored from cache"]
    assert bench.slack.calls_to("chat.update")[-1] == card, "the final card is not drawn over"
    assert bench.store.get(job).status is JobStatus.SUCCEEDED


def test_changes_to_unknown_jobs_are_ignored(bench: Bench, job: str) -> None:
    calls = len(bench.slack.calls)
    bot.notifier.handler(bus_event("job_changed", job_id="shapes-nosuch"), CONTEXT)
    assert len(bench.slack.calls) == calls and bench.job_ids() == [job]


def test_a_rate_limited_card_update_is_retried(bench: Bench, job: str, deliver: Recorder) -> None:
    deliver("job_launched")
    bench.slack.fail("chat.update", status=429, retry_after=1, times=1)
    deliver("job_phase", seq=1, phase="install", state="started")  # a status change: the card must show it
    assert [c.status for c in bench.slack.calls_to("chat.update")][-2:] == [429, 200]
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    assert "Running" in card.text


def test_slack_down_drops_running_updates_but_retries_the_end(bench: Bench, job: str, deliver: Recorder) -> None:
    deliver("job_launched")
    bench.slack.fail("*", status=500)
    deliver("job_phase", seq=1, phase="install", state="started")  # logged, not raised: no retry storm
    assert bench.store.get(job).status is JobStatus.RUNNING

    key = outputs(job).artifact("best", ".pt")
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"w")
    deliver("job_phase", seq=2, phase="upload", state="started")
    artifacts = [{"name": "best", "key": key, "sha256": "0" * 64, "size": 1}]
    with pytest.raises(EndNotShown) as e:
        deliver("job_finished", seq=3, artifacts=artifacts)  # EventBridge retries the delivery
    assert e.value.parts == ["reply", "chart", "card"]
    end = deliver.sent[-1]
    rec = bench.store.get(job)
    assert rec.announced is None and rec.announced_reply is None, "the announcement was given back"
    bench.slack.clear_faults()
    notify(end)  # the retry
    assert replies(bench, job)[-1].startswith(f"<@{USER}> Done:")
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    assert "Succeeded" in card.text
    notify(end)  # a duplicate after that: nothing more
    assert [r for r in replies(bench, job) if "Done:" in r] == [replies(bench, job)[-1]]


def test_a_card_slack_refuses_is_not_retried(bench: Bench, job: str, deliver: Recorder) -> None:
    ref = bench.store.get(job).slack
    assert ref is not None
    bench.store.set_slack(job, ref.model_copy(update={"card_ts": "1.000000"}))  # the card was deleted
    deliver("job_launched")
    deliver("job_error")  # message_not_found: logged; raising would only repeat it for an hour
    assert bench.slack.calls_to("chat.update")[-1].status == 200
    assert bench.store.get(job).status is JobStatus.FAILED


def test_a_delivery_that_is_not_a_job_change_is_dropped(bench: Bench, job: str) -> None:
    calls, before = len(bench.slack.calls), bench.store.get(job)
    event = bus_event("job_changed", job_id=job)
    event["detail-type"] = "Something Else"
    bot.notifier.handler(event, CONTEXT)
    bot.notifier.handler(bus_event("job_changed", job_id=job, status_changed="maybe"), CONTEXT)
    # An agent's event is state the control plane has not decided: the notifier neither applies nor shows it.
    bot.notifier.handler(bus_event("job_progress", job_id=job, current=3), CONTEXT)
    bot.notifier.handler(bus_event("job_error", job_id=job), CONTEXT)
    after = bench.store.get(job)
    assert (after.status, after.progress, after.failure) == (before.status, None, None)
    assert len(bench.slack.calls) == calls


def card(bench: Bench) -> Any:
    [top] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    return top


def card_buttons(bench: Bench) -> list[dict[str, Any]]:
    return [e for b in card(bench).blocks if b["type"] == "actions" for e in b["elements"]]


def put_weights(job: str, name: str, body: bytes) -> Artifact:
    key = outputs(job).artifact(name, ".pt")
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return Artifact(name=name, key=key, sha256="0" * 64, size=len(body))


def test_an_interruption_shows_on_the_card_and_its_relaunch_note_tells_the_requester(
    bench: Bench, job: str, deliver: Recorder
) -> None:
    run_until_training(deliver)
    assert [b["action_id"] for b in card_buttons(bench)] == ["show_logs", "cancel_job"]
    warning = "EC2 will reclaim spot instance `i-0abc` in 2 minutes (terminate): the agent is saving a checkpoint."
    rec = bench.store.get(job)
    notify(JobChanged(job_id=job, cause="Spot Interruption Warning", status=rec.status.value, note=warning))
    assert replies(bench, job)[-1] == warning  # a running job's note: no mention

    checkpoint = put_weights(job, "checkpoint", b"ckpt")
    deliver(JobInterrupted(job_id=job, attempt=1, seq=20, checkpoint=checkpoint, current=3))
    assert deliver.sent[-1].status_changed and bench.store.get(job).status is JobStatus.INTERRUPTED
    shown = json.dumps(card(bench).blocks, ensure_ascii=False)
    assert "Interrupted — relaunching" in shown and "resumes after epoch 3 from the last checkpoint" in shown
    assert [b["action_id"] for b in card_buttons(bench)] == ["show_logs", "cancel_job"], "it can be cancelled"

    note = "EC2 reclaimed the spot instance (notice: terminate). Attempt 2 resumes after epoch 3, launching now."
    notify(JobChanged(job_id=job, cause="Job Interrupted", status="INTERRUPTED", note=note))
    assert replies(bench, job)[-1] == f"<@{USER}> {note}"


def test_a_cancel_by_an_admin_tells_the_requester_once_and_links_the_weights_so_far(
    bench: Bench, job: str, deliver: Recorder
) -> None:
    run_until_training(deliver)
    deliver(JobCancelRequested(job_id=job, attempt=1, by="U0ADMIN"))
    assert bench.store.get(job).status is JobStatus.RUNNING, "the agent still has to stop"
    assert replies(bench, job)[-1].startswith("<@U0ADMIN> asked to cancel")

    last = put_weights(job, "last", b"weights so far")
    deliver(JobCancelled(job_id=job, attempt=1, seq=30, artifacts=[last]))
    rec = bench.store.get(job)
    assert rec.status is JobStatus.CANCELLED and rec.announced is JobStatus.CANCELLED
    said = replies(bench, job)[-1]
    assert said.startswith(f"<@{USER}>, `{job}` (shapes · yolov8n) was cancelled by <@U0ADMIN> at epoch 5/20.")
    assert "Weights written so far: `last`" in said
    [reply] = [m for m in bench.slack.thread(CHANNEL, rec.slack.thread_ts) if m.text == said]  # type: ignore[union-attr]
    url = next(e["url"] for b in reply.blocks if b["type"] == "actions" for e in b["elements"])
    assert requests.get(url, timeout=10).content == b"weights so far"
    assert "Cancelled" in card(bench).text
    assert [b["text"]["text"] for b in card_buttons(bench)] == ["Download weights so far", "Logs"]

    posted = len(bench.slack.calls_to("chat.postMessage"))
    notify(deliver.sent[-1])  # a repeated delivery of the end
    assert len(bench.slack.calls_to("chat.postMessage")) == posted


def test_a_capacity_failure_from_the_launcher_reads_well(bench: Bench, job: str, deliver: Recorder) -> None:
    message = (
        f"*No instance for `{job}`* — spot: no capacity in any type × zone tried.\n*spot*\n"
        "• `g4dn.xlarge` in us-east-1a, us-east-1b; `g5.xlarge` in us-east-1a — InsufficientInstanceCapacity: "
        "no capacity\nCapacity for GPU types comes and goes: try again later, another type with `instance=`."
    )
    # The launcher records its own failures, then announces them; the recorder tells the notifier.
    bench.store.mark_failed(job, Failure(phase="launch", kind="capacity", message=message), attempt=1)
    deliver(JobError(job_id=job, attempt=1, phase="launch", kind="capacity", message=message))
    said = replies(bench, job)[-1]
    assert said.startswith(f"<@{USER}> Failed in launch (capacity): No GPU capacity.")
    thread = bench.slack.thread(CHANNEL, bench.store.get(job).slack.thread_ts)  # type: ignore[union-attr]
    text = thread[-1].blocks[0]["text"]["text"]
    assert "*No GPU capacity*" in text and "`g4dn.xlarge` in us-east-1a, us-east-1b; `g5.xlarge`" in text
    assert "Failed" in card(bench).text and card_buttons(bench) == []


def test_a_watchdog_failure_is_announced_from_its_job_changed(bench: Bench, job: str, deliver: Recorder) -> None:
    deliver("job_launched")
    deliver("job_phase", seq=1, phase="train", state="started")
    message = "No heartbeat from the agent for 11 min (the limit is 10 min): it died or lost its network."
    rec = bench.store.mark_failed(job, Failure(phase="watchdog", kind="heartbeat", message=message), attempt=1)
    notify(JobChanged(job_id=job, cause="Watchdog", status=rec.status.value, status_changed=True))
    said = replies(bench, job)[-1]
    assert said.startswith(f"<@{USER}> Failed in watchdog (heartbeat): Stopped by the watchdog: the agent went silent")
    assert "No heartbeat from the agent for 11 min" in said
    notify(JobChanged(job_id=job, cause="Watchdog", status=rec.status.value, status_changed=True))
    assert [r for r in replies(bench, job) if "Failed in" in r] == [said], "the end is announced once"


# -- a quiet thread ------------------------------------------------------------------------------------------


def metrics_then_end(bench: Bench, deliver: Recorder, job: str, scores: list[float]) -> None:
    deliver("job_launched")
    deliver("job_phase", seq=1, phase="train", state="started")
    for i, map50 in enumerate(scores, start=1):
        deliver("job_progress", seq=2 * i, current=i, total=len(scores), loss=3.0 / i)
        deliver("job_metric", seq=2 * i + 1, current=i, map50=map50, map50_95=map50 / 2)


@pytest.mark.parametrize(("spacing", "announced"), [("3600", ["0.100"]), ("0", ["0.100", "0.300", "0.500", "0.700"])])
def test_new_bests_reach_the_thread_only_so_often_and_the_card_shows_the_latest(
    bench: Bench, job: str, deliver: Recorder, monkeypatch: pytest.MonkeyPatch, spacing: str, announced: list[str]
) -> None:
    monkeypatch.setenv("SPOTTER_BEST_ANNOUNCE_INTERVAL_SECONDS", spacing)
    bot.notifier._notifier = None  # a fresh cold start reads it
    metrics_then_end(bench, deliver, job, [0.1, 0.3, 0.31, 0.5, 0.7])
    bests = [r.removeprefix("New best mAP50 ").split()[0] for r in replies(bench, job) if r.startswith("New best")]
    assert bests == announced  # 0.31 is never news: less than a step above 0.300
    deliver("job_phase", seq=20, phase="upload", state="started")  # waits for the card's window
    assert "0.700" in json.dumps(card(bench).blocks), "the card shows the best the thread skipped"


def test_a_long_job_announces_a_bounded_number_of_bests(
    bench: Bench, job: str, deliver: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTTER_BEST_ANNOUNCE_INTERVAL_SECONDS", "0")
    bot.notifier._notifier = None
    metrics_then_end(bench, deliver, job, [0.05 * i for i in range(1, 20)])
    assert len([r for r in replies(bench, job) if r.startswith("New best")]) == bot.notifier.BEST_ANNOUNCE_MAX


# -- the end under a failing Slack -------------------------------------------------------------------------


def train_and_finish(bench: Bench, deliver: Recorder, job: str) -> None:
    """A job that trains with loss and mAP (so it has a chart), then finishes; whatever Slack says is kept."""
    run_until_training(deliver)
    with contextlib.suppress(EndNotShown):
        finish(bench, deliver, job)


def done_replies(bench: Bench, job: str) -> list[str]:
    return [r for r in replies(bench, job) if r.startswith(f"<@{USER}> Done:")]


def test_a_chart_upload_failure_neither_blocks_nor_repeats_the_result(
    bench: Bench, job: str, deliver: Recorder
) -> None:
    bench.slack.fail("files.getUploadURLExternal", status=503)
    train_and_finish(bench, deliver, job)
    end = deliver.sent[-1]
    assert len(done_replies(bench, job)) == 1 and thread_files(bench, job) == []
    assert "Succeeded" in card(bench).text, "the card did not wait for the chart"
    rec = bench.store.get(job)
    assert rec.announced_part("reply") and rec.announced_part("card") and not rec.announced_part("chart")

    bench.slack.clear_faults()
    notify(end)  # the retry: the chart only
    assert len(done_replies(bench, job)) == 1 and len(thread_files(bench, job)) == 1
    notify(end)
    assert len(thread_files(bench, job)) == 1


def test_a_chart_slack_refuses_is_given_up(bench: Bench, job: str, deliver: Recorder) -> None:
    bench.slack.fail("files.getUploadURLExternal", status=403)  # e.g. the app lacks files:write
    run_until_training(deliver)
    finish(bench, deliver, job)  # no retry: a refusal would not change
    assert thread_files(bench, job) == [] and bench.store.get(job).announced_part("chart")


def test_a_job_with_nothing_to_draw_gets_no_chart(bench: Bench, job: str, deliver: Recorder) -> None:
    deliver("job_launched")
    deliver("job_phase", seq=1, phase="train", state="started")
    finish(bench, deliver, job)
    assert len(done_replies(bench, job)) == 1 and thread_files(bench, job) == []
    assert bench.slack.calls_to("files.getUploadURLExternal") == []


def test_a_minute_of_rate_limited_card_updates_ends_the_card_right_and_says_the_end_once(
    bench: Bench, job: str, deliver: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(bot.notifier, "SLEEP", lambda s: (waits.append(s), time.sleep(s)))
    # The invocation has 2 s left for Slack: the first delivery cannot wait the rate limit out.
    monkeypatch.setattr(bot.notifier, "DEADLINE_MARGIN_SECONDS", 28.0)
    run_until_training(deliver)
    deliver("job_phase", seq=9, phase="upload", state="started")
    bench.slack.fail("chat.update", status=429, retry_after=1)  # until Slack accepts again (clear_faults)
    with pytest.raises(EndNotShown) as e:
        finish(bench, deliver, job)
    assert e.value.parts == ["card"]
    end = deliver.sent[-1]
    assert len(done_replies(bench, job)) == 1 and len(thread_files(bench, job)) == 1
    assert "Succeeded" not in card(bench).text
    with pytest.raises(EndNotShown):
        notify(end)  # EventBridge delivers again while Slack still refuses: the card only is tried
    assert len(done_replies(bench, job)) == 1 and len(thread_files(bench, job)) == 1

    bench.slack.clear_faults()
    notify(end)  # and again once Slack accepts: the card ends right, nothing else is said twice
    assert "Succeeded" in card(bench).text
    assert len(done_replies(bench, job)) == 1 and len(thread_files(bench, job)) == 1
    assert 429 in [c.status for c in bench.slack.calls_to("chat.update")]
    notify(end)
    assert len(done_replies(bench, job)) == 1 and len(thread_files(bench, job)) == 1


def test_a_rate_limit_the_invocation_has_time_for_is_waited_out(
    bench: Bench, job: str, deliver: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(bot.notifier, "SLEEP", lambda s: (waits.append(s), time.sleep(s)))
    run_until_training(deliver)
    deliver("job_phase", seq=9, phase="upload", state="started")
    # One call's three tries, then one more: the notifier's own wait gets past it.
    bench.slack.fail("chat.update", status=429, retry_after=1, times=bot.slack.SLACK_RETRIES + 2)
    finish(bench, deliver, job)  # no raise: one delivery shows it all
    assert 1.0 in waits, "the notifier waited as Retry-After asked"
    assert "Succeeded" in card(bench).text and len(done_replies(bench, job)) == 1


def test_a_result_post_that_timed_out_is_not_posted_again(
    bench: Bench, job: str, deliver: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.slack, "SLACK_TIMEOUT_SECONDS", 1)
    bot.notifier._notifier = None  # the client is made at the cold start
    run_until_training(deliver)
    deliver("job_phase", seq=9, phase="upload", state="started")
    bench.slack.fail("chat.postMessage", hang_seconds=2, times=1)  # Slack takes it, but answers too late
    finish(bench, deliver, job)
    assert bench.slack.wait_for(lambda: len(done_replies(bench, job)) == 1, timeout=10)
    notify(deliver.sent[-1])
    time.sleep(0.5)
    assert len(done_replies(bench, job)) == 1 and "Succeeded" in card(bench).text


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class RateLimitedSlack:
    """The Web API as the notifier's client sees it while Slack answers 429 (Retry-After 5) to `limited` methods
    for a minute: each refused call has taken the client's own two retries' worth of the clock."""

    RETRY_AFTER = 5
    REFUSED_CALL_SECONDS = 2 * (RETRY_AFTER + 1)

    def __init__(self, clock: FakeClock, limited: set[str], for_seconds: float = 60) -> None:
        self.clock, self.limited, self.until = clock, limited, clock.now + for_seconds
        self.calls: list[tuple[str, int]] = []

    def _call(self, method: str) -> dict[str, Any]:
        if method in self.limited and self.clock.now < self.until:
            self.clock.sleep(self.REFUSED_CALL_SECONDS)
            self.calls.append((method, 429))
            body = {"ok": False, "error": "ratelimited"}
            response = SlackResponse(
                client=None,
                http_verb="POST",
                api_url=f"https://slack.com/api/{method}",
                req_args={},
                data=body,
                headers={"Retry-After": str(self.RETRY_AFTER)},
                status_code=429,
            )
            raise SlackApiError("ratelimited", response)
        self.clock.sleep(0.2)
        self.calls.append((method, 200))
        return {"ok": True, "ts": f"{self.clock.now:.6f}"}

    def chat_postMessage(self, **_: Any) -> dict[str, Any]:
        return self._call("chat.postMessage")

    def chat_update(self, **_: Any) -> dict[str, Any]:
        return self._call("chat.update")

    def files_upload_v2(self, **_: Any) -> dict[str, Any]:
        return self._call("files.upload")

    def accepted(self, method: str) -> int:
        return self.calls.count((method, 200))


@pytest.mark.parametrize(
    "limited", [{"chat.update"}, {"chat.update", "chat.postMessage", "files.upload"}], ids=["card", "everything"]
)
def test_a_whole_minute_of_429_is_survived_by_redelivery_exactly_once(
    bench: Bench, job: str, monkeypatch: pytest.MonkeyPatch, limited: set[str]
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(bot.notifier, "CLOCK", clock)
    monkeypatch.setattr(bot.notifier, "SLEEP", clock.sleep)
    on_its_instance(bench, job)
    for ev in (
        JobPhase(job_id=job, seq=1, phase="train", state="started"),
        JobProgress(job_id=job, seq=2, unit="epoch", current=1, total=2, loss=2.0),
        JobMetric(job_id=job, seq=3, unit="epoch", current=1, map50=0.5),
        JobPhase(job_id=job, seq=4, phase="upload", state="started"),
        JobFinished(job_id=job, seq=5, artifacts=[put_weights(job, "best", b"w")]),
    ):
        outcome = lifecycle.apply(bench.store, ev)
    end = lifecycle.changed_event(outcome, "Job Finished")
    assert end is not None and end.status == "SUCCEEDED"
    slack = RateLimitedSlack(clock, limited)
    notifier = bot.notifier.Notifier(BotSettings.from_env(), slack, bench.store)  # type: ignore[arg-type]

    deliveries = 0
    while True:  # EventBridge: the invocation has 30 s; a failed one is delivered again a minute later
        deliveries += 1
        assert deliveries < 10, slack.calls
        try:
            notifier.handle(end, deadline=clock() + 30 - bot.notifier.DEADLINE_MARGIN_SECONDS)
            break
        except EndNotShown:
            clock.sleep(60)
    assert deliveries > 1, "the first delivery could not outwait a minute of 429"
    assert (slack.accepted("chat.postMessage"), slack.accepted("files.upload"), slack.accepted("chat.update")) == (
        1,
        1,
        1,
    )
    assert ("chat.update", 429) in slack.calls
    rec = bench.store.get(job)
    assert all(rec.announced_part(p) for p in ("reply", "chart", "card"))
    notifier.handle(end, deadline=clock() + 18)  # one more duplicate: nothing
    assert (slack.accepted("chat.postMessage"), slack.accepted("files.upload"), slack.accepted("chat.update")) == (
        1,
        1,
        1,
    )


def test_a_delivery_that_finds_a_part_held_by_another_retries_until_it_is_shown(bench: Bench, job: str) -> None:
    on_its_instance(bench, job)
    for ev in (
        JobPhase(job_id=job, seq=1, phase="upload", state="started"),
        JobFinished(job_id=job, seq=2, artifacts=[put_weights(job, "best", b"w")]),
    ):
        outcome = lifecycle.apply(bench.store, ev)
    end = lifecycle.changed_event(outcome, "Job Finished")
    assert end is not None
    held = bench.store.claim_announcement(job, JobStatus.SUCCEEDED, "reply")  # a concurrent delivery posting it
    assert held is not None
    with pytest.raises(EndNotShown) as e:
        notify(end)
    assert e.value.parts == ["reply", "chart"], "the card is drawn; the reply is the other's, the chart follows it"
    assert done_replies(bench, job) == [] and "Succeeded" in card(bench).text
    bench.store.announcement_shown(job, "reply", held)  # the other delivery posted it
    notify(end)
    assert done_replies(bench, job) == []  # not posted a second time here
