"""Slack credentials from Secrets Manager, the Web API client with its retry policy, and the weights links the bot hands out.

The credentials stay SecretStr everywhere: they show as `**********` in any log line, repr or error.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

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
# The weights handed out, best first: a finished job has `best`; a cancelled one may have only the `last` it wrote.
WEIGHTS_ARTIFACTS = ("best", "last")


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


def web_client(token: str | None, settings: BotSettings) -> WebClient:
    """A WebClient for `settings.slack_api_url` that retries rate limits, 5xx answers and dropped connections."""
    return WebClient(
        token=token,
        base_url=settings.slack_api_url.rstrip("/") + "/",
        timeout=SLACK_TIMEOUT_SECONDS,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=SLACK_RETRIES),
            RateLimitErrorRetryHandler(max_retry_count=SLACK_RETRIES),
            ServerErrorRetryHandler(max_retry_count=SLACK_RETRIES),
        ],
    )


def weights_artifact(rec: JobRecord) -> Artifact | None:
    """The weights a person downloads: of a job that succeeded, or the ones written so far by a cancelled one."""
    if rec.status not in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
        return None
    by_name = {a.name: a for a in rec.artifacts}
    return next((by_name[name] for name in WEIGHTS_ARTIFACTS if name in by_name), None)


def weights_link(rec: JobRecord, settings: BotSettings) -> tuple[Artifact, str] | None:
    """A fresh presigned GET for the job's weights (saved as `<job>-<file>`), or None if it has none."""
    artifact = weights_artifact(rec)
    if artifact is None:
        return None
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
    return artifact, str(url)
