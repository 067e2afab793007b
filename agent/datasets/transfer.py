"""Parallel, verified downloads from S3 to local disk.

Training reads from local disk, never from a mount that can drop mid-run. Each file lands under a temporary
name and takes its real one only once its size and SHA-256 match, so a file that is present is whole: a
resumed attempt on the same disk re-checks it and skips the download. A file that arrives corrupt is fetched
once more, then the dataset is refused by name.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from agent.datasets.manifest import safe_path
from spotter.layout import sha256_of

WORKERS = 8  # files in flight: below the S3 client's connection pool (10)
LARGE_BYTES = 64 * 1024 * 1024  # from here a file is fetched in parallel ranges, one such file at a time
_LARGE = TransferConfig(multipart_threshold=LARGE_BYTES, multipart_chunksize=16 * 1024 * 1024, max_concurrency=WORKERS)
_CHUNK = 1 << 20
ATTEMPTS = 2


class TransferError(RuntimeError):
    """A file that could not be fetched whole; the message names it."""


@dataclass(frozen=True)
class Remote:
    """One object to fetch: where it goes, and what it must be."""

    path: str  # relative to the local root
    key: str
    size: int
    sha256: str | None  # None: no manifest, and S3 holds no whole-object SHA-256 for it
    s3_checksum: bool = False  # S3 lists a SHA-256 checksum for the object: ask for it before fetching


@dataclass
class Fetched:
    files: int = 0
    bytes: int = 0
    reused: int = 0
    retried: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0
        return (
            f"downloaded {self.files} files ({human_size(self.bytes)}) in {self.seconds:.1f} s ({rate:.1f} MB/s), "
            f"{self.reused} already here and verified, {self.retried} fetched twice"
        )


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def list_objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", ())


def listed_remotes(s3: Any, bucket: str, prefix: str) -> list[Remote]:
    """Every object under `prefix`, as files relative to it (S3 folder markers left out)."""
    remotes = []
    for obj in list_objects(s3, bucket, prefix):
        rel = obj["Key"][len(prefix) :]
        if not rel or rel.endswith("/"):
            continue
        try:
            safe_path(rel)
        except ValueError:
            raise TransferError(
                f"s3://{bucket}/{obj['Key']} cannot be a local file name (empty or `..` parts)"
            ) from None
        remotes.append(
            Remote(
                path=rel,
                key=obj["Key"],
                size=int(obj["Size"]),
                sha256=None,
                s3_checksum="SHA256" in obj.get("ChecksumAlgorithm", ()),
            )
        )
    return remotes


def s3_sha256(s3: Any, bucket: str, key: str) -> str | None:
    """The object's SHA-256 as S3 recorded it, hex; None when S3 only has a checksum of its parts."""
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    value = head.get("ChecksumSHA256")
    multipart = "-" in head.get("ETag", "")
    if not value or "-" in value or (multipart and head.get("ChecksumType") != "FULL_OBJECT"):
        return None
    return base64.b64decode(value).hex()


def download(s3: Any, bucket: str, remotes: list[Remote], root: Path) -> Fetched:
    """Fetch every remote under `root`, verified, skipping files already there and whole."""
    started = time.monotonic()
    stats = Fetched()
    large = [r for r in remotes if r.size >= LARGE_BYTES]
    small = [r for r in remotes if r.size < LARGE_BYTES]
    # Large files use all the connections in ranges, one after the other; small ones share them a file each.
    results = [_fetch(s3, bucket, r, root) for r in large]
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="fetch") as pool:
        results += pool.map(lambda r: _fetch(s3, bucket, r, root), small)
    for remote, outcome in zip([*large, *small], results, strict=True):
        if outcome == "reused":
            stats.reused += 1
            continue
        stats.files += 1
        stats.bytes += remote.size
        stats.retried += outcome == "retried"
    stats.seconds = time.monotonic() - started
    return stats


def _fetch(s3: Any, bucket: str, remote: Remote, root: Path) -> str:
    dest = root / remote.path
    where = f"s3://{bucket}/{remote.key}"
    try:
        expected = remote.sha256
        if expected is None and remote.s3_checksum:
            expected = s3_sha256(s3, bucket, remote.key)
        if (
            dest.is_file()
            and dest.stat().st_size == remote.size
            and (expected is None or sha256_of(dest)[0] == expected)
        ):
            return "reused"
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        problem = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                _get(s3, bucket, remote, part)
            except BotoCoreError:  # the stream broke off, or botocore's own check of it failed
                if attempt == ATTEMPTS:
                    raise
                continue
            size = part.stat().st_size
            digest = sha256_of(part)[0] if expected is not None and size == remote.size else None
            if size == remote.size and digest == expected:
                part.replace(dest)
                return "fetched" if attempt == 1 else "retried"
            problem = (
                f"{size} bytes instead of {remote.size}"
                if size != remote.size
                else f"SHA-256 {digest} instead of {expected}"
            )
            part.unlink()
        raise TransferError(f"{where} is corrupt: {problem} (downloaded {ATTEMPTS} times)")
    except (ClientError, BotoCoreError, OSError) as e:
        raise TransferError(f"{where} could not be fetched: {e}") from e


def _get(s3: Any, bucket: str, remote: Remote, part: Path) -> None:
    if remote.size >= LARGE_BYTES:
        s3.download_file(bucket, remote.key, str(part), Config=_LARGE)
        return
    body = s3.get_object(Bucket=bucket, Key=remote.key)["Body"]
    with part.open("wb") as f:
        for chunk in body.iter_chunks(_CHUNK):
            f.write(chunk)
