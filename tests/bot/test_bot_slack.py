"""Slack credentials from Secrets Manager, the Web API client's retry policy, and the weights links."""

from __future__ import annotations

import json
import time

import boto3
import pytest
import requests
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, ServerErrorRetryHandler

from bot.slack import (
    RATE_LIMIT_MAX_WAIT_SECONDS,
    SLACK_TIMEOUT_SECONDS,
    BoundedRateLimitRetryHandler,
    load_credentials,
    retry_after,
    web_client,
    weights_link,
    weights_links,
)
from infra.local.slack import SlackStandIn
from spotter.config import BotSettings, ConfigError
from spotter.events import Artifact
from spotter.status import JobStatus
from tests.bot.conftest import BOT_TOKEN, BUCKET, SECRET, SIGNING_SECRET, Bench
from tests.bot.test_bot_views import running


def test_credentials_come_from_the_secret_and_do_not_show(bench: Bench) -> None:
    creds = load_credentials(bench.settings)
    assert creds.bot_token.get_secret_value() == BOT_TOKEN
    assert creds.signing_secret.get_secret_value() == SIGNING_SECRET
    assert BOT_TOKEN not in repr(creds) and SIGNING_SECRET not in str(creds)


def test_a_bad_secret_is_named_without_its_contents(bench: Bench) -> None:
    from aws_lambda_powertools.utilities import parameters

    boto3.client("secretsmanager").put_secret_value(SecretId=SECRET, SecretString=json.dumps({"bot_token": BOT_TOKEN}))
    parameters.clear_caches()
    with pytest.raises(ConfigError) as e:
        load_credentials(bench.settings)
    assert "signing_secret" in str(e.value) and BOT_TOKEN not in str(e.value)


def test_web_client_talks_to_the_configured_api_with_retries(bench: Bench, slack: SlackStandIn) -> None:
    client = web_client(BOT_TOKEN, bench.settings)
    assert client.base_url == slack.api_url and client.timeout == SLACK_TIMEOUT_SECONDS
    kinds = {type(h) for h in client.retry_handlers or []}
    assert kinds == {ConnectionErrorRetryHandler, BoundedRateLimitRetryHandler, ServerErrorRetryHandler}
    slack.fail("chat.postMessage", status=500, times=2)
    assert client.chat_postMessage(channel="C1", text="hi")["ok"]
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [500, 500, 200]


def test_weights_link_downloads_the_best_artifact(bench: Bench) -> None:
    rec = running().model_copy(update={"status": JobStatus.SUCCEEDED})
    key = f"jobs/{rec.job_id}/artifacts/best.pt"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"weights")
    assert weights_link(rec, bench.settings) is None  # no artifact recorded yet
    art = Artifact(name="best", key=key, sha256="0" * 64, size=7)
    link = weights_link(rec.model_copy(update={"artifacts": [art]}), bench.settings)
    assert link is not None and link[0] == art
    assert f"X-Amz-Expires={bench.settings.presign_seconds}" in link[1]
    got = requests.get(link[1], timeout=10)
    assert got.status_code == 200 and got.content == b"weights"
    assert f'filename="{rec.job_id}-best.pt"' in got.headers["content-disposition"]


def test_a_short_rate_limit_is_waited_out_in_the_call_and_a_long_one_is_raised(
    bench: Bench, slack: SlackStandIn
) -> None:
    client = web_client(BOT_TOKEN, bench.settings)
    slack.fail("chat.update", status=429, retry_after=1, times=1)
    posted = client.chat_postMessage(channel="C1", text="card")
    assert client.chat_update(channel="C1", ts=posted["ts"], text="again")["ok"]
    assert [c.status for c in slack.calls_to("chat.update")] == [429, 200]

    slack.fail("chat.update", status=429, retry_after=RATE_LIMIT_MAX_WAIT_SECONDS + 25, times=5)
    started = time.monotonic()
    with pytest.raises(SlackApiError) as e:
        client.chat_update(channel="C1", ts=posted["ts"], text="and again")
    assert time.monotonic() - started < 5, "a 30 s Retry-After is not slept inside the call"
    assert e.value.response.status_code == 429 and retry_after(e.value.response.headers) == 30
    assert [c.status for c in slack.calls_to("chat.update")] == [429, 200, 429]


def test_retry_after_reads_slack_sdk_headers_in_either_shape() -> None:
    assert retry_after({"Retry-After": "5"}) == 5
    assert retry_after({"retry-after": ["12"]}) == 12
    assert retry_after({"content-type": "application/json"}) is None
    assert retry_after({"Retry-After": "soon"}) is None


def test_download_links_last_one_hour_unless_configured() -> None:
    env = {"SPOTTER_JOBS_TABLE": "t", "SPOTTER_BUCKET": "b", "SPOTTER_BUS_NAME": "e", "SPOTTER_SLACK_SECRET": "s"}
    assert BotSettings.from_env(env).presign_seconds == 3600
    assert BotSettings.from_env({**env, "SPOTTER_PRESIGN_SECONDS": "900"}).presign_seconds == 900
    with pytest.raises(ConfigError):
        BotSettings.from_env({**env, "SPOTTER_PRESIGN_SECONDS": str(8 * 24 * 3600)})  # past S3's week
    assert BotSettings.from_env(env).best_announce_interval_seconds == 300


def _put(job: str, name: str, file: str, body: bytes) -> Artifact:
    key = f"jobs/{job}/artifacts/{file}"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return Artifact(name=name, key=key, sha256="0" * 64, size=len(body))


def test_darknet_weights_come_with_their_cfg_data_and_names(bench: Bench) -> None:
    rec = running().model_copy(update={"status": JobStatus.SUCCEEDED})
    job = rec.job_id
    files = {
        "names": _put(job, "names", "obj.names", b"person\n"),
        "best": _put(job, "best", "yolov4_best.weights", b"best"),
        "chart": _put(job, "chart", "chart_yolov4.png", b"png"),
        "last": _put(job, "last", "yolov4_last.weights", b"last"),
        "cfg": _put(job, "cfg", "yolov4.cfg", b"[net]"),
        "data": _put(job, "data", "obj.data", b"classes=1"),
    }
    rec = rec.model_copy(update={"artifacts": list(files.values())})
    links = weights_links(rec, bench.settings)
    assert [a.name for a, _ in links] == ["best", "cfg", "data", "names"], "weights first, then what they need"
    for art, url in links:
        got = requests.get(url, timeout=10)
        assert got.status_code == 200 and got.headers["content-disposition"].endswith(
            f'{job}-{art.key.rsplit("/", 1)[1]}"'
        )
    assert [a.name for a, _ in weights_links(rec, bench.settings, "last")] == ["last", "cfg", "data", "names"]
    link = weights_link(rec, bench.settings, "last")
    assert link is not None and requests.get(link[1], timeout=10).content == b"last"


def test_weights_fall_back_to_final_then_last_and_only_for_jobs_that_have_them(bench: Bench) -> None:
    rec = running().model_copy(update={"status": JobStatus.SUCCEEDED})
    final = _put(rec.job_id, "final", "model_final.pth", b"final")
    config = _put(rec.job_id, "config", "config.yaml", b"MODEL: {}")
    detectron2 = rec.model_copy(update={"artifacts": [final, config]})
    assert [a.name for a, _ in weights_links(detectron2, bench.settings)] == ["final", "config"]
    assert weights_links(detectron2, bench.settings, "last") == [], "no last weights: nothing, not the cfg alone"
    assert weights_links(detectron2.model_copy(update={"status": JobStatus.FAILED}), bench.settings) == []
