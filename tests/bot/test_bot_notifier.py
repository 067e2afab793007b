"""The notifier end to end: EventBridge deliveries through `bot.notifier.handler` → the job record → the channel."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
import requests
from slack_sdk.errors import SlackApiError

import bot.notifier
from infra.local.invoke import LambdaContext
from spotter.status import JobStatus
from tests.bot.conftest import BUCKET, CHANNEL, Bench, bus_event

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


@pytest.fixture
def deliver(job: str) -> Callable[..., None]:
    """EventBridge delivering one event of the sample kind `name` for the job, with detail overrides."""

    def send(name: str, **detail: Any) -> None:
        bot.notifier.handler(bus_event(name, job_id=job, **{"at": time.time(), **detail}), CONTEXT)

    return send


def replies(bench: Bench, job: str) -> list[str]:
    ref = bench.store.get(job).slack
    assert ref is not None
    return [m.text for m in bench.slack.thread(CHANNEL, ref.thread_ts)]


def card_updates(bench: Bench) -> list[float]:
    return [c.at for c in bench.slack.calls_to("chat.update") if c.status == 200]


def run_until_training(deliver: Callable[..., None]) -> None:
    deliver("job_launched")
    deliver("job_phase", seq=1, phase="install", state="started")
    for i, seq in enumerate(range(2, 7), start=1):
        deliver("job_progress", seq=seq, current=i, total=20, loss=2.0 / i)
    deliver("job_metric", seq=7, current=5, map50=0.61, map50_95=0.40)
    deliver("job_metric", seq=8, current=6, map50=0.55, map50_95=0.38)  # not a new best: no reply


def finish(bench: Bench, deliver: Callable[..., None], job: str) -> bytes:
    weights = b"best.pt bytes"
    key = f"jobs/{job}/artifacts/best.pt"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=weights)
    deliver("job_phase", seq=9, phase="upload", state="started")
    deliver("job_finished", seq=10, artifacts=[{"name": "best", "key": key, "sha256": "0" * 64, "size": len(weights)}])
    return weights


def test_a_job_from_launch_to_weights(
    bench: Bench, job: str, deliver: Callable[..., None], sleeps: list[float]
) -> None:
    run_until_training(deliver)
    weights = finish(bench, deliver, job)

    rec = bench.store.get(job)
    assert rec.status is JobStatus.SUCCEEDED and rec.best is not None and rec.best.map50 == 0.61
    said = replies(bench, job)
    assert [s.split(":")[0].split(" ")[0] for s in said] == ["install", "New", "upload", "Done"]
    assert "New best mAP50 0.610" in said[1]
    assert "mAP50 0.550 final, 0.610 best" in said[3] and "of instance time" in said[3]

    # the card: never twice within the interval; status changes and the end waited for their window
    updates = card_updates(bench)
    assert len(updates) >= 3
    assert all(b - a >= INTERVAL - SLACK_SLOP for a, b in itertools.pairwise(updates)), updates
    assert sleeps, "a status change waited for the card's window"
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    assert "Succeeded" in card.text
    button = next(e for b in card.blocks if b["type"] == "actions" for e in b["elements"])
    assert button["text"]["text"] == "Download weights"
    assert requests.get(button["url"], timeout=10).content == weights


@pytest.mark.parametrize("interval", [2.0])
def test_progress_inside_the_window_is_skipped_and_caught_up(
    bench: Bench, job: str, deliver: Callable[..., None]
) -> None:
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


def test_an_error_fails_the_job_with_the_last_lines(bench: Bench, job: str, deliver: Callable[..., None]) -> None:
    deliver("job_launched")
    deliver("job_phase", seq=1, phase="install", state="started")
    deliver("job_error")
    rec = bench.store.get(job)
    assert rec.status is JobStatus.FAILED and rec.failure is not None and rec.failure.kind == "oom"
    ref = rec.slack
    assert ref is not None
    failure = bench.slack.thread(CHANNEL, ref.thread_ts)[-1]
    assert failure.text.startswith("Failed in train (oom): CUDA out of memory")
    log = failure.blocks[1]["text"]["text"]
    assert log.startswith("Last lines of the log:\n```") and "torch.OutOfMemoryError" in log
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    assert "Failed" in card.text


def test_repeated_and_late_events_change_nothing_in_slack(bench: Bench, job: str, deliver: Callable[..., None]) -> None:
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
    deliver("job_phase", seq=13, phase="train", state="started")
    assert len(bench.slack.calls) == calls and replies(bench, job) == said
    assert bench.store.get(job).status is JobStatus.SUCCEEDED


def test_events_for_unknown_jobs_are_ignored(bench: Bench, job: str) -> None:
    calls = len(bench.slack.calls)
    bot.notifier.handler(bus_event("job_progress", job_id="shapes-nosuch"), CONTEXT)
    assert len(bench.slack.calls) == calls and bench.job_ids() == [job]


def test_a_rate_limited_card_update_is_retried(bench: Bench, job: str, deliver: Callable[..., None]) -> None:
    deliver("job_launched")
    bench.slack.fail("chat.update", status=429, retry_after=1, times=1)
    deliver("job_phase", seq=1, phase="install", state="started")  # a status change: the card must show it
    assert [c.status for c in bench.slack.calls_to("chat.update")][-2:] == [429, 200]
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    assert "Running" in card.text


def test_slack_down_drops_running_updates_but_retries_the_end(
    bench: Bench, job: str, deliver: Callable[..., None]
) -> None:
    deliver("job_launched")
    bench.slack.fail("*", status=500)
    deliver("job_phase", seq=1, phase="install", state="started")  # logged, not raised: no retry storm
    assert bench.store.get(job).status is JobStatus.RUNNING

    key = f"jobs/{job}/artifacts/best.pt"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"w")
    deliver("job_phase", seq=2, phase="upload", state="started")
    artifacts = [{"name": "best", "key": key, "sha256": "0" * 64, "size": 1}]
    with pytest.raises(SlackApiError):
        deliver("job_finished", seq=3, artifacts=artifacts)  # EventBridge retries the delivery
    bench.slack.clear_faults()
    deliver("job_finished", seq=3, artifacts=artifacts)  # the retry
    assert replies(bench, job)[-1].startswith("Done:")
    [card] = [m for m in bench.slack.messages(CHANNEL) if m.thread_ts is None]
    assert "Succeeded" in card.text
    deliver("job_finished", seq=3, artifacts=artifacts)  # a duplicate after that: nothing more
    assert [r for r in replies(bench, job) if r.startswith("Done:")] == [replies(bench, job)[-1]]


def test_a_card_slack_refuses_is_not_retried(bench: Bench, job: str, deliver: Callable[..., None]) -> None:
    ref = bench.store.get(job).slack
    assert ref is not None
    bench.store.set_slack(job, ref.model_copy(update={"card_ts": "1.000000"}))  # the card was deleted
    deliver("job_launched")
    deliver("job_error")  # message_not_found: logged; raising would only repeat it for an hour
    assert bench.slack.calls_to("chat.update")[-1].status == 200
    assert bench.store.get(job).status is JobStatus.FAILED


def test_a_delivery_that_is_not_a_spotter_event_is_dropped(bench: Bench, job: str) -> None:
    event = bus_event("job_progress", job_id=job)
    event["detail-type"] = "Something Else"
    bot.notifier.handler(event, CONTEXT)
    event = bus_event("job_progress", job_id=job, current=-1)
    bot.notifier.handler(event, CONTEXT)
    assert bench.store.get(job).progress is None
