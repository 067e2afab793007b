"""The Slack function end to end: signed Function URL requests through `bot.app.handler`, the ack, the lazy work."""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import boto3
import pytest
import requests

from bot.app import job_seed
from infra.local import slack as standin
from spotter import spec
from spotter.events import Artifact
from spotter.status import JobStatus
from tests.bot.conftest import (
    BOT_TOKEN,
    BUCKET,
    CHANNEL,
    SIGNING_SECRET,
    TEAM,
    USER,
    AwsCalls,
    Bench,
    function_url_event,
)


def ack_text(resp: dict[str, Any]) -> str:
    assert resp["statusCode"] == 200, resp
    body = json.loads(resp["body"])
    assert body["response_type"] == "ephemeral"
    return str(body["text"])


def queued_job(resp: dict[str, Any]) -> str:
    match = re.match(r"Queued `([a-z0-9-]+)`", ack_text(resp))
    assert match, resp["body"]
    return match.group(1)


def answers(bench: Bench) -> list[str]:
    """What the user was told through the command's response_url, oldest first."""
    return [m.text for m in bench.slack.ephemerals(CHANNEL, USER)]


def test_train_acks_with_the_job_and_queues_it(bench: Bench) -> None:
    body = bench.slash_body("shapes yolov8n epochs=5")
    resp = bench.post(function_url_event(body))
    job = queued_job(resp)
    assert job == spec.new_job_id("shapes", seed=TEAM + parse_qs(body)["trigger_id"][0])
    bench.settle()

    rec = bench.store.get(job)
    assert rec.status is JobStatus.QUEUED and rec.spec.params.epochs == 5
    assert (rec.spec.requested_by, rec.channel) == (USER, CHANNEL)
    [card] = bench.slack.messages(CHANNEL)
    assert rec.slack is not None and rec.slack.card_ts == rec.slack.thread_ts == card.ts
    assert card.blocks[0]["text"]["text"] == "shapes · yolov8n" and job in card.text
    [queued] = bench.bus_events()
    assert (queued["source"], queued["detail-type"], queued["detail"]["job_id"]) == ("spotter.bot", "Job Queued", job)


def test_the_ack_makes_no_aws_or_slack_call(bench: Bench, aws_calls: AwsCalls) -> None:
    bench.slash("help")  # the cold start reads the settings and the secret once, before any ack of interest
    aws_calls.calls.clear()
    slack_calls = len(bench.slack.calls)
    bench.gate.clear()  # the lazy invocation waits until the ack is checked

    started = time.perf_counter()
    job = queued_job(bench.post(function_url_event(bench.slash_body("shapes yolov8n"))))
    took = time.perf_counter() - started
    assert aws_calls.calls == [] and len(bench.slack.calls) == slack_calls
    assert took < 0.5, f"the ack took {took:.3f} s"
    assert bench.invocations == 1

    bench.gate.set()
    bench.settle()
    assert ("dynamodb", "PutItem") in aws_calls.calls and ("events", "PutEvents") in aws_calls.calls
    assert bench.store.get(job).slack is not None


def test_the_secret_is_read_once_per_cold_start(bench: Bench, aws_calls: AwsCalls) -> None:
    for text in ("help", "datasets", "models"):
        ack_text(bench.slash(text))
    assert aws_calls.calls.count(("secretsmanager", "GetSecretValue")) == 1


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(lambda body: function_url_event(body, secret="not-the-signing-secret"), id="bad-signature"),
        pytest.param(lambda body: function_url_event(body, timestamp=time.time() - 301), id="stale"),
        pytest.param(lambda body: function_url_event(body, signed=False), id="missing-headers"),
    ],
)
def test_unsigned_requests_are_refused_and_change_nothing(bench: Bench, event: Any) -> None:
    resp = bench.post(event(bench.slash_body("shapes yolov8n")))
    bench.settle()
    assert resp["statusCode"] == 401
    assert bench.job_ids() == [] and bench.slack.calls == [] and bench.bus_events() == []
    assert bench.invocations == 0


def test_a_tampered_body_is_refused(bench: Bench) -> None:
    event = function_url_event(bench.slash_body("shapes yolov8n"))
    event["body"] = event["body"].replace("yolov8n", "yolov8s")
    assert bench.post(event)["statusCode"] == 401
    assert bench.invocations == 0


def test_a_base64_body_is_read(bench: Bench) -> None:
    job = queued_job(bench.post(function_url_event(bench.slash_body("shapes yolo11n"), as_base64=True)))
    bench.settle()
    assert bench.job_ids() == [job]


def test_a_replayed_request_creates_no_second_job_or_card(bench: Bench) -> None:
    event = function_url_event(bench.slash_body("shapes yolov8n"))
    first = queued_job(bench.post(event))
    bench.settle()
    again = queued_job(bench.post(event))  # byte for byte, signature included, inside Slack's five minutes
    bench.settle()
    assert first == again
    assert bench.job_ids() == [first]
    assert len(bench.slack.calls_to("chat.postMessage")) == 1
    assert len(bench.bus_events()) == 1


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "faces yolov8n",
            ["Unknown dataset `faces`", "`shapes`", "`s3://bucket/prefix/`", "`/train shapes yolov8n epochs=20`"],
        ),
        ("shapes yolov8n epochs=0", ["`epochs=0` is not valid", "from 1 to 10000"]),
        ("shapes yolov8n fast", ["`fast` is not an option"]),
    ],
)
def test_bad_or_unavailable_commands_are_answered_in_the_ack(bench: Bench, text: str, says: list[str]) -> None:
    answer = ack_text(bench.slash(text))
    for part in says:
        assert part in answer
    assert bench.job_ids() == [] and bench.slack.calls == [] and bench.invocations == 0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "Spotter commands"),
        ("help", "Spotter commands"),
        ("datasets", "Datasets: shapes"),
        ("models", "Models by framework: "),
    ],
)
def test_help_datasets_and_models_are_answered_in_the_ack(bench: Bench, text: str, says: str) -> None:
    assert says in ack_text(bench.slash(text))
    assert bench.invocations == 0


def succeed(bench: Bench, job: str) -> Artifact:
    """Walk the job to SUCCEEDED with its weights in S3, as the launcher and the agent would."""
    key = f"jobs/{job}/artifacts/best.pt"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"best weights")
    art = Artifact(name="best", key=key, sha256="1" * 64, size=12)
    bench.store.mark_launching(job, 1)
    bench.store.mark_running(job, 1)
    bench.store.mark_uploading(job, 1)
    bench.store.mark_succeeded(job, 1, [art])
    return art


def test_status_list_and_weights_answer_through_the_response_url(bench: Bench) -> None:
    job = queued_job(bench.slash("shapes yolov8n"))
    assert bench.slash("list")["body"] == ""  # the answer needs the table: it comes from the lazy listener
    assert job in answers(bench)[-1]
    bench.slash(f"status {job}")
    assert "shapes · yolov8n: Queued" in answers(bench)[-1]
    bench.slash("weights " + job)
    assert f"Job `{job}` has no weights to download (it is queued)" in answers(bench)[-1]

    succeed(bench, job)
    bench.slash("status")  # the channel's latest job
    assert "Succeeded" in answers(bench)[-1]
    bench.slash(f"weights {job}")
    [message] = bench.slack.ephemerals(CHANNEL, USER)[-1:]
    # Each file's row carries its own download button.
    url = next(b["accessory"]["url"] for b in message.blocks if (b.get("accessory") or {}).get("url"))
    assert requests.get(url, timeout=10).content == b"best weights"


def test_jobs_of_other_channels_and_unknown_jobs_are_not_shown(bench: Bench) -> None:
    job = queued_job(bench.slash("shapes yolov8n", channel="C0PRIVATE"))
    for text in (f"status {job}", f"weights {job}", "status shapes-nosuch"):
        bench.slash(text)
        assert "There is no job" in answers(bench)[-1] and "`/train list`" in answers(bench)[-1]
    bench.slash("list")
    assert "No jobs in this channel yet" in answers(bench)[-1]


def test_a_channel_the_bot_cannot_post_in_fails_the_job_and_says_how_to_fix_it(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_in_channel(args: dict[str, Any]) -> dict[str, Any]:
        raise standin._ApiError("not_in_channel")

    # The stand-in has no channel membership; this one channel refuses the bot as Slack would.
    monkeypatch.setitem(bench.slack._methods, "chat.postMessage", not_in_channel)
    job = queued_job(bench.slash("shapes yolov8n"))
    rec = bench.store.get(job)
    assert rec.status is JobStatus.FAILED and rec.failure is not None and rec.failure.kind == "not_in_channel"
    assert "`/invite @Spotter`" in answers(bench)[-1] and f"Job `{job}` was not started" in answers(bench)[-1]
    assert bench.bus_events() == []


def test_a_failure_after_the_job_was_recorded_fails_it_on_its_card(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTTER_BUS_NAME", "no-such-bus")
    job = queued_job(bench.slash("shapes yolov8n"))
    rec = bench.store.get(job)
    assert rec.status is JobStatus.FAILED and rec.failure is not None and rec.failure.phase == "queue"
    [card] = bench.slack.messages(CHANNEL)
    assert "Failed" in card.text
    assert f"Job `{job}` was not started" in answers(bench)[-1]


def test_the_download_button_click_is_acknowledged(bench: Bench) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": USER},
        "api_app_id": "A0SPOTTER",
        "actions": [{"action_id": "download_weights", "type": "button", "block_id": "b", "action_ts": "1"}],
    }
    resp = bench.post(function_url_event(urlencode({"payload": json.dumps(payload)})))
    assert resp["statusCode"] == 200


def test_the_credentials_never_show(bench: Bench, capfd: pytest.CaptureFixture[str]) -> None:
    job = queued_job(bench.slash("shapes yolov8n"))
    bench.slash(f"status {job}")
    bench.slash("persons")
    out, err = capfd.readouterr()
    seen = [out, err, json.dumps([c.args for c in bench.slack.calls]), bench.store.get(job).model_dump_json()]
    for secret in (BOT_TOKEN, SIGNING_SECRET):
        assert not any(secret in s for s in seen)
    assert job_seed({"team_id": "T1", "trigger_id": "x"}) == "T1x"
