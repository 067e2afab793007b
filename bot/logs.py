"""A job's logs in S3 for `/train logs` and the card's Logs button: the newest log's last lines and fresh links.

The agent uploads each phase's whole log so far under `jobs/<job>/logs/attempt-<n>/<phase>.log`, again as the phase
goes on. The tail is read with a ranged GET (a training log can be hundreds of megabytes), and every link is a
presigned GET minted now, as short-lived as the weights links.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spotter import layout

TAIL_LINES = 30
TAIL_BYTES = 64 * 1024  # enough for 30 lines of any framework's output, even darknet's long ones
_LOG_KEY = re.compile(r"/logs/attempt-(\d+)/([a-z0-9_-]+)\.log$")
# Terminal control sequences (colours, cursor moves, erase-line) that frameworks print for a terminal.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


@dataclass(frozen=True)
class LogFile:
    key: str
    attempt: int
    phase: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class LogView:
    """What `/train logs` shows: the newest log's tail, a link to it whole, and links to the others."""

    latest: LogFile
    tail: list[str]
    url: str
    others: list[tuple[LogFile, str]]


def log_files(s3: Any, bucket: str, job_id: str) -> list[LogFile]:
    """The job's logs, oldest first (by attempt, then by when they were last written)."""
    found: list[LogFile] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=layout.logs(job_id)):
        for obj in page.get("Contents", []):
            m = _LOG_KEY.search(obj["Key"])
            if m:
                found.append(LogFile(obj["Key"], int(m.group(1)), m.group(2), int(obj["Size"]), obj["LastModified"]))
    return sorted(found, key=lambda f: (f.attempt, f.modified, f.key))


def tail(s3: Any, bucket: str, log: LogFile, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` lines, from the end of the object only; a partial first line is dropped."""
    if log.size == 0:
        return []
    start = max(0, log.size - TAIL_BYTES)
    body = s3.get_object(Bucket=bucket, Key=log.key, Range=f"bytes={start}-")["Body"].read()
    text = _ANSI.sub("", body.decode("utf-8", errors="replace"))
    # Progress bars rewrite their line with carriage returns: keep what the line ended up saying.
    got = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n")]
    if start > 0 and got:
        got = got[1:]
    while got and not got[-1].strip():
        got.pop()
    return got[-lines:]


def presign(s3: Any, bucket: str, key: str, job_id: str, expires_in: int) -> str:
    name = f"{job_id}-{key.rsplit('/', 2)[-2]}-{key.rsplit('/', 1)[-1]}"
    return str(
        s3.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": bucket,
                "Key": key,
                "ResponseContentType": "text/plain; charset=utf-8",
                "ResponseContentDisposition": f'inline; filename="{name}"',
            },
            ExpiresIn=expires_in,
        )
    )


def log_view(s3: Any, bucket: str, job_id: str, expires_in: int) -> LogView | None:
    """The job's logs as `/train logs` shows them, or None when the agent has uploaded none yet."""
    files = log_files(s3, bucket, job_id)
    if not files:
        return None
    latest = files[-1]
    others = [(f, presign(s3, bucket, f.key, job_id, expires_in)) for f in files[:-1]]
    return LogView(latest, tail(s3, bucket, latest), presign(s3, bucket, latest.key, job_id, expires_in), others)
