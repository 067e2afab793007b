"""Slack credentials from Secrets Manager, the Web API client with its retry policy, and the download links the bot
hands out (weights, the files they come with).

The credentials stay SecretStr everywhere: they show as `**********` in any log line, repr or error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, Literal

from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from spotter.aws import client
from spotter.config import BotSettings, ConfigError
from spotter.events import Artifact
from spotter.status import JobStatus
from spotter.store import JobRecord

SECRET_MAX_AGE_SECONDS = 300  # a rotated secret reaches warm functions within five minutes
# Long enough for a slow Slack, short enough that a hung call leaves the Lambda (30 s) time to report it.
# Timeouts are not retried: a post that timed out may have been made, and a second one would show twice.
SLACK_TIMEOUT_SECONDS = 10
SLACK_RETRIES = 2
# A 429 asking for a longer wait than this is not waited out inside one call (two such waits would outlast a
# 30 s Lambda): the call raises, and its caller decides (the notifier waits if its invocation has the time, or
# gives the delivery back to be retried later).
RATE_LIMIT_MAX_WAIT_SECONDS = 5

WeightsChoice = Literal["best", "last"]
# The artifact each choice downloads, the first one the job has: `best` is the best epoch's weights (detectron2
# jobs recorded before they had one keep `final`); a cancelled job may have only the `last` it wrote.
WEIGHTS_ARTIFACTS: dict[WeightsChoice, tuple[str, ...]] = {"best": ("best", "final", "last"), "last": ("last",)}
# The files weights are useless without, linked beside them: darknet's network cfg, .data and .names, detectron2's
# config.yaml.
COMPANION_ARTIFACTS = ("cfg", "data", "names", "config")


class SlackCredentials(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    bot_token: SecretStr
    signing_secret: SecretStr


def load_credentials(settings: BotSettings) -> SlackCredentials:
    """The Slack app's secret (JSON `{"bot_token", "signing_secret"}`), cached for SECRET_MAX_AGE_SECONDS."""
    raw = parameters.get_secret(settings.slack_secret, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    try:
        return SlackCredentials.model_validate(raw)
    except ValidationError as e:
        # pydantic's own message quotes the input, i.e. the secret: name only the fields.
        fields = ", ".join(sorted({str(err["loc"][0]) for err in e.errors() if err["loc"]}))
        raise ConfigError(f"secret {settings.slack_secret}: needs string fields {fields}") from None


def retry_after(headers: Mapping[str, Any]) -> float | None:
    """Slack's Retry-After in seconds (headers as slack_sdk holds them: a value or a list of values), or None."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            first = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(first))
            except (TypeError, ValueError):
                return None
    return None


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's rate-limit retries, honouring Retry-After, for waits up to `max_wait_seconds` only."""

    def __init__(self, max_retry_count: int, max_wait_seconds: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait_seconds = max_wait_seconds

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if not super()._can_retry(state=state, request=request, response=response, error=error) or response is None:
            return False
        wait = retry_after(response.headers)
        return wait is None or wait <= self.max_wait_seconds


def web_client(token: str | None, settings: BotSettings) -> WebClient:
    """A WebClient for `settings.slack_api_url` that retries short rate limits, 5xx answers and dropped
    connections."""
    return WebClient(
        token=token,
        base_url=settings.slack_api_url.rstrip("/") + "/",
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=SLACK_RETRIES),
            BoundedRateLimitRetryHandler(SLACK_RETRIES, RATE_LIMIT_MAX_WAIT_SECONDS),
            ServerErrorRetryHandler(max_retry_count=SLACK_RETRIES),
        ],
    )


# -- download links ------------------------------------------------------------------------------------------


def weights_artifact(rec: JobRecord, which: WeightsChoice = "best") -> Artifact | None:
    """The weights a person downloads: of a job that succeeded, or the ones written so far by a cancelled one."""
    if rec.status not in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
        return None
    by_name = {a.name: a for a in rec.artifacts}
    return next((by_name[name] for name in WEIGHTS_ARTIFACTS[which] if name in by_name), None)


def artifact_link(rec: JobRecord, artifact: Artifact, settings: BotSettings) -> str:
    """A fresh presigned GET for one of the job's artifacts, saved as `<job>-<file>`, working for presign_seconds."""
    filename = f"{rec.job_id}-{PurePosixPath(artifact.key).name}"
    url = client("s3", settings.region).generate_presigned_url(
        "get_object",
        Params={
            "Bucket": settings.bucket,
            "Key": artifact.key,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        },
        ExpiresIn=settings.presign_seconds,
    )
    return str(url)


def weights_link(rec: JobRecord, settings: BotSettings, which: WeightsChoice = "best") -> tuple[Artifact, str] | None:
    """The job's weights (`best` unless asked for `last`) and a fresh link to them, or None if it has none."""
    artifact = weights_artifact(rec, which)
    return None if artifact is None else (artifact, artifact_link(rec, artifact, settings))


def weights_links(rec: JobRecord, settings: BotSettings, which: WeightsChoice = "best") -> list[tuple[Artifact, str]]:
    """The weights and each companion file the job has (cfg, data, names, config), weights first, each with a fresh
    link; [] when the job has no weights to download."""
    weights = weights_link(rec, settings, which)
    if weights is None:
        return []
    by_name = {a.name: a for a in rec.artifacts}
    companions = [by_name[name] for name in COMPANION_ARTIFACTS if name in by_name]
    return [weights, *((a, artifact_link(rec, a, settings)) for a in companions)]
