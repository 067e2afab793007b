"""Starting weights, fetched ahead of training and checked against their sha256: the pretrained ones from the bucket's
`cache/pretrained/` (model hubs time out or throttle busy boxes) or a schedule's promoted ones, and the operator's
command that publishes pretrained weights.

    python -m agent.inputs publish --bucket BUCKET FILE…     (each FILE becomes cache/pretrained/<its name>)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from agent.plan import Pretrained, Promoted
from agent.uploader import TRANSFER_CONFIG
from spotter import layout
from spotter.aws import client
from spotter.layout import sha256_of

log = logging.getLogger(__name__)

# Files downloaded at once; each download is itself split into parallel parts by the transfer manager.
MAX_PARALLEL = 4


class InputError(Exception):
    """Starting weights that cannot be had; the message says which and how to put them in place."""


def pretrained_key(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise InputError(f"{name!r} is not a pretrained file name")
    return layout.pretrained(name)


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def fetch_pretrained(items: Sequence[Pretrained], *, s3: Any, bucket: str) -> None:
    """Download each item's `cache/pretrained/<name>` to its `dest` (several at once), verified by sha256.

    A file already at `dest` with the published sha256 is kept as it is.
    """
    if len(items) <= 1:
        for item in items:
            _fetch_one(item, s3, bucket)
        return
    with ThreadPoolExecutor(min(MAX_PARALLEL, len(items)), thread_name_prefix="pretrained") as pool:
        # list() waits for every download and raises the first failure.
        list(pool.map(lambda item: _fetch_one(item, s3, bucket), items))


def _fetch_one(item: Pretrained, s3: Any, bucket: str) -> None:
    key = pretrained_key(item.name)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        if _status(e) == 404:
            raise InputError(
                f"the pretrained weights {item.name} are not in s3://{bucket}/{key}; an operator publishes them with "
                f"`python -m agent.inputs publish --bucket {bucket} {item.name}`"
            ) from None
        raise InputError(f"cannot look up s3://{bucket}/{key}: {e}") from None
    expected = head.get("Metadata", {}).get("sha256")
    if not expected:
        raise InputError(
            f"s3://{bucket}/{key} has no sha256 metadata to check it against; publish it again with "
            f"`python -m agent.inputs publish --bucket {bucket} {item.name}`"
        )
    if item.dest.is_file() and sha256_of(item.dest)[0] == expected:
        log.info("pretrained %s already at %s", item.name, item.dest)
        return
    try:
        actual, size = download_checked(s3, bucket, key, item.dest, expected)
    except (ClientError, BotoCoreError) as e:
        raise InputError(f"cannot download s3://{bucket}/{key}: {e}") from None
    if actual != expected:
        raise InputError(f"s3://{bucket}/{key} downloaded with sha256 {actual}, its metadata says {expected}")
    log.info("pretrained %s: %d bytes to %s, sha256 %s verified", item.name, size, item.dest, actual)


def fetch_promoted(item: Promoted, *, s3: Any, bucket: str) -> None:
    """Download the promoted weights to `item.dest`, verified against the sha256 the run spec names."""
    uri = layout.s3_uri(bucket, item.key)
    whose = f"the promoted weights of job {item.job_id} ({uri})"
    try:
        actual, size = download_checked(s3, bucket, item.key, item.dest, item.sha256)
    except ClientError as e:
        if _status(e) == 404:
            raise InputError(
                f"{whose} are gone from the bucket: promote another run's weights or train from=pretrained"
            ) from None
        raise InputError(f"cannot download {whose}: {e}") from None
    except BotoCoreError as e:
        raise InputError(f"cannot download {whose}: {e}") from None
    if actual != item.sha256:
        raise InputError(
            f"{whose} downloaded with sha256 {actual} ({size} bytes), the run spec names {item.sha256} "
            f"({item.size} bytes): not training from them"
        )
    log.info("promoted weights of job %s: %d bytes to %s, sha256 %s verified", item.job_id, size, item.dest, actual)


def download_checked(s3: Any, bucket: str, key: str, dest: Path, sha256: str) -> tuple[str, int]:
    """Download `key` by way of `<dest>.part`, which becomes `dest` only if its bytes have `sha256`.

    Returns the downloaded bytes' sha256 and size, matching or not; S3's errors are the caller's to word.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        s3.download_file(bucket, key, str(partial), Config=TRANSFER_CONFIG)
        actual, size = sha256_of(partial)
        if actual == sha256:
            os.replace(partial, dest)
        return actual, size
    finally:
        partial.unlink(missing_ok=True)


def publish_pretrained(path: Path, *, s3: Any, bucket: str, name: str | None = None) -> tuple[str, str]:
    """Upload a file as `cache/pretrained/<name>` (its own name by default) with its sha256; returns key, sha256."""
    key = pretrained_key(name or path.name)
    sha256, _ = sha256_of(path)
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}}, Config=TRANSFER_CONFIG)
    return key, sha256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.inputs", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    publish = commands.add_parser("publish", help="upload pretrained files to cache/pretrained/ with their sha256")
    publish.add_argument("--bucket", required=True, help="the Spotter bucket")
    publish.add_argument("files", nargs="+", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    s3 = client("s3")
    for path in args.files:
        if not path.is_file():
            print(f"{path}: not a file", file=sys.stderr)
            return 1
        try:
            key, sha256 = publish_pretrained(path, s3=s3, bucket=args.bucket)
        except (ClientError, BotoCoreError, S3UploadFailedError) as e:
            print(f"{path}: upload failed: {e}", file=sys.stderr)
            return 1
        print(f"s3://{args.bucket}/{key} sha256 {sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
