"""Slash commands as Slack sends them: form-encoded, signed (v0 HMAC-SHA256), wrapped in a Function URL event."""

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


def sign(secret: str, timestamp: str, body: str) -> str:
    mac = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={mac}"


def slash_body(
    *, command: str, text: str, user: str, channel: str, team: str, response_url: str, trigger_id: str
) -> str:
    return urlencode(
        {
            "token": "local-verification-token",
            "team_id": team,
            "team_domain": "spotter-local",
            "channel_id": channel,
            "channel_name": "ml-training",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0SPOTTER",
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


def signed_event(secret: str, body: str, signature: Signature = "valid", now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    ts = str(int(now - STALE_SECONDS if signature == "stale" else now))
    if signature == "missing":
        return function_url_event(body, {})
    key = secrets.token_hex(16) if signature == "bad" else secret
    return function_url_event(body, {"x-slack-request-timestamp": ts, "x-slack-signature": sign(key, ts, body)})
