"""Uploads an attempt's artifacts, checkpoints and logs below its instance's outputs prefix, each weights file with its sha256 as object
metadata; the keys come from spotter.layout.

boto3's managed transfer does the work (multipart above the threshold, parts in parallel); retries
come from the client's botocore config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from spotter import layout
from spotter.events import Artifact

MIB = 1024 * 1024
TRANSFER_CONFIG = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=16 * MIB, max_concurrency=4)


class Uploader:
    def __init__(
        self, s3: Any, bucket: str, outputs: layout.Outputs, attempt: int, *, config: TransferConfig = TRANSFER_CONFIG
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.outputs = outputs
        self.attempt = attempt
        self.config = config

    def upload_verified(self, name: str, path: Path, key: str, kind: layout.ObjectKind | None = None) -> Artifact:
        """Upload `path` to `key` with its sha256 in the object's metadata (and the lifecycle tag of `kind`)."""
        sha256, size = layout.sha256_of(path)
        extra: dict[str, Any] = {"Metadata": {"sha256": sha256}}
        if kind is not None:
            extra["Tagging"] = layout.kind_tagging(kind)
        self.s3.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Config=self.config)
        return Artifact(name=name, key=key, sha256=sha256, size=size)

    def upload_artifact(self, name: str, path: Path) -> Artifact:
        """Upload `path` as artifact `name` (key `…/artifacts/<name><suffix>`), sha256 in its metadata."""
        return self.upload_verified(name, path, self.outputs.artifact(name, path.suffix))

    def upload_checkpoint(self, path: Path, suffix: str) -> Artifact:
        """Upload `path` as the job's latest checkpoint (what the next attempt resumes from)."""
        return self.upload_verified("checkpoint", path, self.outputs.checkpoint(suffix), kind="checkpoint")

    def upload_log(self, phase: str, path: Path) -> str:
        """Upload a phase's whole log so far (again at each call: a later upload replaces the earlier one)."""
        key = self.outputs.log(self.attempt, phase)
        self.s3.upload_file(
            str(path),
            self.bucket,
            key,
            ExtraArgs={"ContentType": "text/plain; charset=utf-8", "Tagging": layout.kind_tagging("log")},
            Config=self.config,
        )
        return key
