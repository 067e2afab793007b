"""Slack credentials from Secrets Manager, the Web API client's retry policy, and the weights links."""

from __future__ import annotations

import json

import boto3
import pytest
import requests
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.slack import SLACK_TIMEOUT_SECONDS, load_credentials, web_client, weights_link
from infra.local.slack import SlackStandIn
from spotter.config import ConfigError
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
    assert kinds == {ConnectionErrorRetryHandler, RateLimitErrorRetryHandler, ServerErrorRetryHandler}
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
