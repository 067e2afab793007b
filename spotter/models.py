"""Promoted weights: the best result of a dataset × model's scheduled runs, under `models/<dataset>/<model>/`.

`promoted.json` there says which job's weights are promoted, their mAP50 and the copied artifacts (keys, sha256,
sizes). A scheduled run starts from them (`from=promoted`) and, once it finishes, replaces them only if its mAP50
is better. The manifest is written last, after the weights are copied, so a reader never sees a manifest whose
files are not there; the copies are named by job, so a half-done promotion never overwrites the promoted files.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spotter import layout
from spotter.events import Artifact
from spotter.spec import InitialWeights
from spotter.store import JobRecord, Promotion

MANIFEST = "promoted.json"
# The artifacts promotion copies (weights, and what darknet weights are useless without).
PROMOTED_ARTIFACTS = ("best", "last", "cfg", "data", "names", "config")
# Less than this above the promoted mAP50 is noise between two runs, not better weights.
MIN_GAIN = 0.0005


class Promoted(BaseModel):
    """The manifest of the promoted weights of one dataset × model."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    map50: float | None = None
    map50_95: float | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    promoted_at: float = 0.0
    previous_job: str | None = None
    previous_map50: float | None = None

    def artifact(self, name: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.name == name), None)


def manifest_key(dataset: str, model: str) -> str:
    return f"{layout.model(dataset, model)}{MANIFEST}"


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


class ModelRegistry:
    """Reads and promotes the weights under `models/` in the artifacts bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def promoted(self, dataset: str, model: str) -> Promoted | None:
        """The promoted weights, or None when a schedule never promoted any."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=manifest_key(dataset, model))["Body"].read()
        except ClientError as e:
            if _code(e) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        try:
            return Promoted.model_validate_json(body)
        except ValidationError as e:
            raise ValueError(
                f"{manifest_key(dataset, model)} is not a promotion manifest: {e.errors()[0]['msg']}"
            ) from None

    def initial_weights(self, dataset: str, model: str) -> InitialWeights | None:
        """What a `from=promoted` run starts from: the promoted best weights, if there are any."""
        current = self.promoted(dataset, model)
        best = current.artifact("best") if current else None
        if current is None or best is None:
            return None
        return InitialWeights(
            key=best.key, sha256=best.sha256, size=best.size, job_id=current.job_id, map50=current.map50
        )

    def consider(
        self, rec: JobRecord, artifacts: list[Artifact], map50: float | None, map50_95: float | None, at: float
    ) -> Promotion:
        """Promote the finished run's weights if they beat the promoted ones; say what was compared either way.

        Repeating it (a redelivered Job Finished) gives the same answer and copies nothing twice.
        """
        spec = rec.spec
        current = self.promoted(spec.dataset, spec.model)
        if current is not None and current.job_id == rec.job_id:
            # Promoted by an earlier delivery of this same event.
            return Promotion(
                map50=current.map50,
                previous_map50=current.previous_map50,
                previous_job=current.previous_job,
                promoted=True,
            )
        previous = current.map50 if current else None
        previous_job = current.job_id if current else None
        if map50 is None:
            return Promotion(previous_map50=previous, previous_job=previous_job, reason="the run reported no mAP50")
        if not any(a.name == "best" for a in artifacts):
            return Promotion(map50=map50, previous_map50=previous, previous_job=previous_job, reason="no best weights")
        if previous is not None and map50 < previous + MIN_GAIN:
            return Promotion(
                map50=map50, previous_map50=previous, previous_job=previous_job, reason="not better than the promoted"
            )
        copied = [
            self._copy(spec.dataset, spec.model, rec.job_id, a) for a in artifacts if a.name in PROMOTED_ARTIFACTS
        ]
        manifest = Promoted(
            job_id=rec.job_id,
            map50=map50,
            map50_95=map50_95,
            artifacts=copied,
            promoted_at=at,
            previous_job=previous_job,
            previous_map50=previous,
        )
        self.s3.put_object(
            Bucket=self.bucket,
            Key=manifest_key(spec.dataset, spec.model),
            Body=manifest.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
        return Promotion(map50=map50, previous_map50=previous, previous_job=previous_job, promoted=True)

    def _copy(self, dataset: str, model: str, job_id: str, artifact: Artifact) -> Artifact:
        """A server-side copy (managed: multipart above 5 GB) next to the manifest, sha256 kept in its metadata."""
        name = artifact.key.rsplit("/", 1)[-1]
        key = f"{layout.model(dataset, model)}{job_id}/{name}"
        self.s3.copy(
            {"Bucket": self.bucket, "Key": artifact.key},
            self.bucket,
            key,
            ExtraArgs={"Metadata": {"sha256": artifact.sha256, "job": job_id}, "MetadataDirective": "REPLACE"},
        )
        return Artifact(name=artifact.name, key=key, sha256=artifact.sha256, size=artifact.size)
