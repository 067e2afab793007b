"""Requests as Slack sends them to the app: form-encoded, signed (v0 HMAC-SHA256), wrapped in a Function URL event.

Slash commands are the form itself; interactivity (button clicks) is a form with one `payload` field holding the
JSON (see infra.local.interactivity). A retry is the same body again, signed afresh, with Slack's retry headers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any, Literal
from urllib.parse import urlencode

Signature = Literal["valid", "bad", "stale", "missing"]
STALE_SECONDS = 6 * 60  # Slack's window is five minutes
# Who the local workspace's requests say they come from (the team id is the stack's).
VERIFICATION_TOKEN = "local-verification-token"
TEAM_DOMAIN = "spotter-local"
API_APP_ID = "A0SPOTTER"
CHANNEL_NAME = "ml-training"


def sign(secret: str, timestamp: str, body: str) -> str:
    mac = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={mac}"


def slash_body(
    *, command: str, text: str, user: str, channel: str, team: str, response_url: str, trigger_id: str
) -> str:
    return urlencode(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": team,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel,
            "channel_name": CHANNEL_NAME,
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": API_APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )


def new_trigger_id() -> str:
    return f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"


def function_url_event(body: str, headers: dict[str, str]) -> dict[str, Any]:
    """A Lambda Function URL (payload 2.0) event for a POST with this body."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/slack/events",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/x-www-form-urlencoded",
            "host": "spotter-local.lambda-url.us-east-1.on.aws",
            "user-agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "x-forwarded-proto": "https",
            **headers,
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "spotter-local",
            "domainName": "spotter-local.lambda-url.us-east-1.on.aws",
            "http": {
                "method": "POST",
                "path": "/slack/events",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "Slackbot 1.0",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


def signed_event(
    secret: str,
    body: str,
    signature: Signature = "valid",
    now: float | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Function URL event of Slack's POST of `body`, signed as `signature` says, with extra `headers`
    (lower-case names, as a Function URL passes them)."""
    now = time.time() if now is None else now
    ts = str(int(now - STALE_SECONDS if signature == "stale" else now))
    extra = dict(headers or {})
    if signature == "missing":
        return function_url_event(body, extra)
    key = secrets.token_hex(16) if signature == "bad" else secret
    return function_url_event(
        body, {"x-slack-request-timestamp": ts, "x-slack-signature": sign(key, ts, body), **extra}
    )


RETRY_REASON = "http_timeout"


def retry_headers(attempt: int, reason: str = RETRY_REASON) -> dict[str, str]:
    """The headers Slack adds when it sends a request again (`attempt` 1 for the first retry)."""
    return {"x-slack-retry-num": str(attempt), "x-slack-retry-reason": reason}
