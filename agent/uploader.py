"""Uploads a job's artifacts and logs under its S3 prefix, each artifact with its sha256 as object metadata.

boto3's managed transfer does the work (multipart above the threshold, parts in parallel); retries
come from the client's botocore config.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from spotter.events import Artifact

MIB = 1024 * 1024
TRANSFER_CONFIG = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=16 * MIB, max_concurrency=4)
HASH_CHUNK = 1 * MIB


def sha256_of(path: Path) -> tuple[str, int]:
    """The file's sha256 and size, read in chunks: weights can be gigabytes."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class Uploader:
    def __init__(
        self, s3: Any, bucket: str, job_id: str, attempt: int, *, config: TransferConfig = TRANSFER_CONFIG
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = f"jobs/{job_id}/"
        self.attempt = attempt
        self.config = config

    def artifact_key(self, name: str, path: Path) -> str:
        return f"{self.prefix}artifacts/{name}{path.suffix}"

    def log_key(self, phase: str) -> str:
        return f"{self.prefix}logs/attempt-{self.attempt}/{phase}.log"

    def upload_artifact(self, name: str, path: Path) -> Artifact:
        """Upload `path` as artifact `name` (key `…/artifacts/<name><suffix>`), sha256 in its metadata."""
        sha256, size = sha256_of(path)
        key = self.artifact_key(name, path)
        self.s3.upload_file(str(path), self.bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}}, Config=self.config)
        return Artifact(name=name, key=key, sha256=sha256, size=size)

    def upload_log(self, phase: str, path: Path) -> str:
        """Upload a phase's whole log so far (again at each call: a later upload replaces the earlier one)."""
        key = self.log_key(phase)
        self.s3.upload_file(
            str(path), self.bucket, key, ExtraArgs={"ContentType": "text/plain; charset=utf-8"}, Config=self.config
        )
        return key
