"""The bot's test bench: moto with what template.yaml declares for it, the Slack stand-in, signed slash commands.

Sample events live in tests/bot/events/*.json (STYLE #8): a slash command's fields as Slack posts them, a
Function URL (payload 2.0) event, and one EventBridge delivery per event type the notifier handles.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import botocore.client
import pytest
from aws_lambda_powertools.utilities import parameters

import bot.app
import bot.notifier
from infra.local.invoke import LambdaContext, LocalLambdaClient
from infra.local.slack import SlackStandIn
from spotter import layout
from spotter.config import BotSettings
from spotter.store import JobsStore
from tests.spotter.helpers import table_definition

EVENTS = Path(__file__).parent / "events"
SAMPLE_INSTANCE = "i-0123456789abcdef0"  # the job_launched sample's
FUNCTION = "spotter-slack"
TABLE, BUCKET, BUS, SECRET = "spotter-jobs", "spotter-artifacts", "spotter", "spotter/slack"  # pragma: allowlist secret
TEAM, CHANNEL, USER = "T0SPOTTER", "C0TRAINING", "U0ALICE"
BOT_TOKEN = f"xoxb-test-{secrets.token_hex(12)}"
SIGNING_SECRET = secrets.token_hex(16)


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return event


def outputs(job_id: str) -> layout.Outputs:
    """Where the agent on the job_launched sample's instance writes."""
    return layout.Outputs(job_id, layout.instance_arn("aws", "us-east-1", "123456789012", SAMPLE_INSTANCE))


def bus_event(name: str, **detail: Any) -> dict[str, Any]:
    """A sample EventBridge delivery with some of its detail replaced (its artifacts follow its job id)."""
    event = load_event(name)
    sample_job = event["detail"]["job_id"]
    event["detail"].update(detail)
    job_id = event["detail"]["job_id"]
    if "artifacts" not in detail:
        for artifact in event["detail"].get("artifacts", []):
            artifact["key"] = artifact["key"].replace(outputs(sample_job).prefix, outputs(job_id).prefix)
    event["resources"] = [f"spotter:job/{event['detail']['job_id']}"]
    return event


def sign(secret: str, timestamp: str, body: str) -> str:
    """Slack's v0 request signature: HMAC-SHA256 over `v0:{timestamp}:{body}`."""
    return "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()


def function_url_event(
    body: str,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: float | None = None,
    signed: bool = True,
    as_base64: bool = False,
) -> dict[str, Any]:
    """The Function URL event Lambda hands the function for Slack's POST of `body`."""
    event = load_event("function_url")
    headers = event["headers"]
    del headers["x-slack-request-timestamp"], headers["x-slack-signature"]
    if signed:
        ts = str(int(time.time() if timestamp is None else timestamp))
        headers.update({"x-slack-request-timestamp": ts, "x-slack-signature": sign(secret, ts, body)})
    if as_base64:
        event.update(body=base64.b64encode(body.encode()).decode(), isBase64Encoded=True)
    else:
        event["body"] = body
    return event


@dataclass
class Bench:
    """Everything a bot test touches, set up in moto and the stand-in."""

    slack: SlackStandIn
    settings: BotSettings
    store: JobsStore
    queue_url: str
    gate: threading.Event = field(default_factory=threading.Event)
    lambdas: LocalLambdaClient = field(init=False)
    invocations: int = 0  # lazy listener invocations started (bolt re-invoking the function)
    lambda_errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gate.set()
        self.lambdas = LocalLambdaClient(
            handlers={FUNCTION: self._lazy}, on_error=lambda _, e: self.lambda_errors.append(e)
        )

    def _lazy(self, event: dict[str, Any], context: Any) -> Any:
        self.invocations += 1
        self.gate.wait(30)  # tests close the gate to look at the ack alone
        return bot.app.handler(event, context)

    def slash_body(self, text: str, *, channel: str = CHANNEL, user: str = USER) -> str:
        fields = load_event("slash_command") | {
            "text": text,
            "channel_id": channel,
            "user_id": user,
            "response_url": self.slack.new_response_url("/train", channel, user),
            "trigger_id": f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}",
        }
        return urlencode(fields)

    def post(self, event: dict[str, Any]) -> dict[str, Any]:
        """Lambda runs the function for the Function URL request; returns its HTTP response."""
        context: Any = LambdaContext(function_name=FUNCTION)  # the attributes of Lambda's context object
        return bot.app.handler(copy.deepcopy(event), context)

    def slash(self, text: str, **kwargs: Any) -> dict[str, Any]:
        """A signed `/train <text>`; waits for the lazy work it starts."""
        resp = self.post(function_url_event(self.slash_body(text, **kwargs)))
        self.settle()
        return resp

    def settle(self) -> None:
        self.lambdas.join(30)
        assert not self.lambda_errors, self.lambda_errors

    def bus_events(self) -> list[dict[str, Any]]:
        """What the bot put on the bus so far (through an SQS rule target, as any subscriber sees it)."""
        sqs = boto3.client("sqs")
        found: list[dict[str, Any]] = []
        while msgs := sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            found += [json.loads(m["Body"]) for m in msgs]
            for m in msgs:
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return found

    def job_ids(self) -> list[str]:
        items = boto3.client("dynamodb").scan(TableName=self.settings.jobs_table)["Items"]
        return sorted(i["job_id"]["S"] for i in items if "status" in i)  # the jobs, not the channels' lists


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    standin = SlackStandIn(bot_token=BOT_TOKEN).start()
    yield standin
    standin.stop()


@pytest.fixture
def bench(aws: str, slack: SlackStandIn, monkeypatch: pytest.MonkeyPatch) -> Bench:
    """The resources the bot's functions use, built as template.yaml declares them, and the environment naming them."""
    boto3.client("dynamodb").create_table(**table_definition(TABLE))
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    events = boto3.client("events")
    events.create_event_bus(Name=BUS)
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="bus-tap")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="tap", EventBusName=BUS, EventPattern=json.dumps({"source": ["spotter.bot"]}))
    events.put_targets(Rule="tap", EventBusName=BUS, Targets=[{"Id": "tap", "Arn": queue_arn}])
    secret = {"bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET}
    boto3.client("secretsmanager").create_secret(Name=SECRET, SecretString=json.dumps(secret))
    parameters.clear_caches()

    env = {
        "SPOTTER_JOBS_TABLE": TABLE,
        "SPOTTER_BUCKET": BUCKET,
        "SPOTTER_BUS_NAME": BUS,
        "SPOTTER_SLACK_SECRET": SECRET,
        "SPOTTER_SLACK_API_URL": slack.api_url,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    # Each test is a fresh process as far as the handlers know: a cold start reads the settings and the secret.
    monkeypatch.setattr(bot.app, "_adapter", None)
    monkeypatch.setattr(bot.app, "_lambda_client", None)
    monkeypatch.setattr(bot.notifier, "_notifier", None)
    bench = Bench(slack, BotSettings.from_env(), JobsStore(TABLE), queue_url)
    bot.app.set_lambda_client(bench.lambdas)
    return bench


@dataclass
class AwsCalls:
    calls: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> AwsCalls:
    """Every AWS API call any boto3 client makes from now on, as (service, operation)."""
    seen = AwsCalls()
    real: Callable[..., Any] = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009 (private to botocore)

    def recording(self: Any, operation_name: str, api_params: Any) -> Any:
        seen.calls.append((self.meta.service_model.service_name, operation_name))
        return real(self, operation_name, api_params)

    monkeypatch.setattr("botocore.client.BaseClient._make_api_call", recording)
    return seen
