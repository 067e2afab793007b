"""boto3 clients with the project's retry and timeout policy. Endpoints come from configuration
(AWS_ENDPOINT_URL and friends, which botocore reads), never from code."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

from spotter import layout

RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 6},
    connect_timeout=5,
    read_timeout=30,
    tcp_keepalive=True,
)


# Presigned S3 links must be SigV4 (the legacy signature is refused in newer regions and by KMS objects).
S3_CONFIG = RETRY_CONFIG.merge(Config(signature_version="s3v4"))


@functools.cache
def client(service: str, region: str | None = None) -> Any:
    """One client per service and region per process; boto3 clients are thread-safe."""
    session: Any = boto3.session.Session()
    return session.client(service, region_name=region, config=S3_CONFIG if service == "s3" else RETRY_CONFIG)


def reset_clients() -> None:
    """Forget cached clients (the local stack calls this when it points the process at a new endpoint)."""
    client.cache_clear()
    _caller.cache_clear()


@functools.cache
def _caller(region: str | None) -> tuple[str, str]:
    """(partition, account) of this process's credentials; STS answers GetCallerIdentity to any principal."""
    identity = client("sts", region).get_caller_identity()
    return identity["Arn"].split(":")[1], identity["Account"]


def instance_arn(region: str, instance_id: str) -> str:
    """The ARN of one of this account's instances, as IAM's ec2:SourceInstanceARN names it (see spotter.layout)."""
    partition, account = _caller(region)
    return layout.instance_arn(partition, region, account, instance_id)
