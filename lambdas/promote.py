"""Promotes a framework build a job uploaded under its own prefix into the shared build cache.

Training instances run third-party code and may write only under `jobs/<job>/`; this is the one way into
`cache/build/`, which later jobs trust. A build is copied only from its job's own upload, for a job that exists
and runs that recipe, once its bytes hash to the sha256 the job announced. A good cache entry is never replaced
(the first good build of a key wins); one whose bytes no longer match its sha256 is.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from spotter.aws import client
from spotter.config import Settings
from spotter.events import JobBuildReady
from spotter.store import JobsStore

log = logging.getLogger(__name__)

Result = Literal["promoted", "replaced", "exists", "refused"]
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    job_id: str
    result: Result
    cache_key: str
    message: str = ""


def _status(e: ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


@dataclass
class Promoter:
    store: JobsStore
    s3: Any
    bucket: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Promoter:
        return cls(
            JobsStore(settings.jobs_table, record_days=settings.job_record_days),
            client("s3", settings.region),
            settings.bucket,
        )

    def promote(self, ready: JobBuildReady) -> Outcome:
        """Copy the job's build to its cache key unless a good build is there already, or refuse and say why."""
        target = JobBuildReady.cache_object_key(ready.recipe, ready.key)

        def refuse(why: str) -> Outcome:
            return Outcome(ready.job_id, "refused", target, why)

        source = ready.artifact.key
        rec = self.store.find(ready.job_id)
        if rec is None:
            return refuse(f"no job {ready.job_id}")
        instance_id = rec.instance_of(ready.attempt)
        if not ready.offered_by(instance_id):
            return refuse(
                f"{source} is not where attempt {ready.attempt} of job {ready.job_id} (instance {instance_id}) "
                f"uploads a {ready.recipe} build"
            )
        if rec.spec.recipe != ready.recipe:
            return refuse(f"job {ready.job_id} runs recipe {rec.spec.recipe}, not {ready.recipe}")

        existing = self._head(target)
        if existing is not None:
            if self._hash(target, existing["ETag"]) == existing.get("Metadata", {}).get("sha256"):
                return Outcome(ready.job_id, "exists", target, f"built by job {_built_by(existing)}")
            log.warning("cache entry %s does not match its sha256: replacing it", target)

        uploaded = self._head(source)
        if uploaded is None:
            return refuse(f"no object {source}")
        claimed = uploaded.get("Metadata", {}).get("sha256")
        if claimed != ready.artifact.sha256 or uploaded["ContentLength"] != ready.artifact.size:
            return refuse(
                f"{source} is not the build the event describes (sha256 {claimed}, {uploaded['ContentLength']} bytes)"
            )
        if self._hash(source, uploaded["ETag"]) != ready.artifact.sha256:
            return refuse(f"the bytes of {source} do not hash to {ready.artifact.sha256}")

        # The conditions make the copy exact: these very bytes (the job could overwrite its upload meanwhile), and
        # no build another job promoted in between.
        guard = {"IfNoneMatch": "*"} if existing is None else {"IfMatch": existing["ETag"]}
        try:
            self.s3.copy_object(
                Bucket=self.bucket,
                Key=target,
                CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceIfMatch=uploaded["ETag"],
                MetadataDirective="REPLACE",
                # Not the offer's lifecycle tag: the cache keeps what it holds.
                TaggingDirective="REPLACE",
                Metadata={
                    "sha256": ready.artifact.sha256,
                    "built-by": ready.job_id,
                    "built-attempt": str(ready.attempt),
                },
                **guard,
            )
        except ClientError as e:
            if _status(e) not in (409, 412):
                raise
            now = self._head(target)
            if now is not None and now.get("ETag") != (existing or {}).get("ETag"):
                return Outcome(ready.job_id, "exists", target, f"built by job {_built_by(now)} meanwhile")
            return refuse(f"{source} changed while it was being promoted")
        return Outcome(ready.job_id, "promoted" if existing is None else "replaced", target)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _status(e) == 404:
                return None
            raise
        return head

    def _hash(self, key: str, etag: str) -> str:
        """The sha256 of the object's bytes, of exactly the version `etag` names."""
        body = self.s3.get_object(Bucket=self.bucket, Key=key, IfMatch=etag)["Body"]
        digest = hashlib.sha256()
        for chunk in body.iter_chunks(HASH_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()


def _built_by(head: dict[str, Any]) -> str:
    return str(head.get("Metadata", {}).get("built-by", "unknown"))
