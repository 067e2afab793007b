"""A small IMDSv2 client: who this instance is, and whether EC2 has announced a spot interruption or recommends
rebalancing.

The endpoint comes from AWS_EC2_METADATA_SERVICE_ENDPOINT (the variable botocore reads), so the
local stack's metadata stand-in serves the same requests a real instance makes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import requests

DEFAULT_ENDPOINT = "http://169.254.169.254"
TIMEOUT_SECONDS = 2.0
TOKEN_TTL_SECONDS = 21600
# Renew the token this long before EC2 would expire it, so a request never carries a stale one.
TOKEN_RENEW_MARGIN_SECONDS = 60


class ImdsError(RuntimeError):
    """The metadata service could not be reached or answered with an error."""


class Imds:
    def __init__(self, endpoint: str | None = None, timeout: float = TIMEOUT_SECONDS) -> None:
        self.endpoint = (endpoint or os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or DEFAULT_ENDPOINT).rstrip(
            "/"
        )
        self.timeout = timeout
        self._session = requests.Session()
        self._token: str | None = None
        self._token_expires = 0.0

    def _get_token(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expires:
            try:
                resp = self._session.put(
                    f"{self.endpoint}/latest/api/token",
                    headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)},
                    timeout=self.timeout,
                )
                resp.raise_for_status()
            except requests.RequestException as e:
                raise ImdsError(f"no IMDSv2 token from {self.endpoint}: {e}") from None
            self._token = resp.text.strip()
            self._token_expires = time.monotonic() + TOKEN_TTL_SECONDS - TOKEN_RENEW_MARGIN_SECONDS
        return self._token

    def get(self, path: str) -> str | None:
        """The text at `/latest/meta-data/<path>`, or None where the service answers 404."""
        url = f"{self.endpoint}/latest/meta-data/{path}"
        for attempt in range(2):
            try:
                resp = self._session.get(
                    url, headers={"X-aws-ec2-metadata-token": self._get_token()}, timeout=self.timeout
                )
            except requests.RequestException as e:
                raise ImdsError(f"IMDS {path}: {e}") from None
            if resp.status_code == 401 and attempt == 0:
                # The token expired early (e.g. the service restarted): fetch a new one once.
                self._token = None
                continue
            if resp.status_code == 404:
                return None
            if not resp.ok:
                raise ImdsError(f"IMDS {path}: HTTP {resp.status_code}")
            return resp.text
        raise ImdsError(f"IMDS {path}: token refused")

    def _required(self, path: str) -> str:
        value = self.get(path)
        if value is None:
            raise ImdsError(f"IMDS {path}: not found")
        return value.strip()

    def instance_id(self) -> str:
        return self._required("instance-id")

    def availability_zone(self) -> str:
        return self._required("placement/availability-zone")

    def instance_type(self) -> str:
        return self._required("instance-type")

    def image_id(self) -> str:
        """The AMI this instance booted: part of the build cache key (compilers and CUDA come with it)."""
        return self._required("ami-id")

    def spot_action(self) -> dict[str, Any] | None:
        """`{"action": "terminate"|"stop"|"hibernate", "time": ISO-8601}` once EC2 has scheduled an interruption."""
        text = self.get("spot/instance-action")
        return None if text is None else _json_object(path="spot/instance-action", text=text)

    def rebalance(self) -> dict[str, Any] | None:
        """`{"noticeTime": ISO-8601}` once EC2 has seen an elevated risk of interruption for this instance."""
        text = self.get("events/recommendations/rebalance")
        return None if text is None else _json_object(path="events/recommendations/rebalance", text=text)


def _json_object(*, path: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise ImdsError(f"IMDS {path}: not JSON: {text[:100]!r}") from None
    if not isinstance(value, dict):
        raise ImdsError(f"IMDS {path}: not a JSON object: {text[:100]!r}")
    return value
