"""Promoted weights in S3: a scheduled run replaces them only with better ones, and says what it compared."""

from __future__ import annotations

import hashlib

import boto3
import pytest

from spotter.events import Artifact
from spotter.models import ModelRegistry, manifest_key
from spotter.store import JobRecord, JobsStore
from tests.spotter.helpers import make_spec, outputs_of

BUCKET = "artifacts"


@pytest.fixture
def registry(aws: str) -> ModelRegistry:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return ModelRegistry(s3, BUCKET)


def _finished(store: JobsStore, registry: ModelRegistry, seed: str) -> tuple[JobRecord, list[Artifact]]:
    spec = make_spec(seed=seed).model_copy(update={"schedule_id": "shapes-yolov8n-abc123"})
    rec = store.create(spec, trigger=seed)
    arts = []
    for name, body in (("best", f"best of {seed}".encode()), ("last", f"last of {seed}".encode())):
        key = outputs_of(rec.job_id).artifact(name, ".pt")
        registry.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        arts.append(Artifact(name=name, key=key, sha256=hashlib.sha256(body).hexdigest(), size=len(body)))
    return rec, arts


def test_the_first_run_is_promoted_and_later_runs_only_when_better(store: JobsStore, registry: ModelRegistry) -> None:
    assert registry.promoted("shapes", "yolov8n") is None
    assert registry.initial_weights("shapes", "yolov8n") is None

    first, arts = _finished(store, registry, "n1")
    p1 = registry.consider(first, arts, 0.712, 0.40, at=1.0)
    assert (p1.promoted, p1.map50, p1.previous_map50, p1.previous_job) == (True, 0.712, None, None)
    promoted = registry.promoted("shapes", "yolov8n")
    assert promoted is not None and promoted.job_id == first.job_id
    best = promoted.artifact("best")
    assert best is not None and best.key.startswith(f"models/shapes/yolov8n/{first.job_id}/")
    # The copy holds the run's bytes, under the model's prefix, and the run starts from it.
    body = registry.s3.get_object(Bucket=BUCKET, Key=best.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == best.sha256 == arts[0].sha256
    start = registry.initial_weights("shapes", "yolov8n")
    assert start is not None and (start.key, start.job_id, start.map50) == (best.key, first.job_id, 0.712)

    worse, arts2 = _finished(store, registry, "n2")
    p2 = registry.consider(worse, arts2, 0.70, None, at=2.0)
    assert (p2.promoted, p2.map50, p2.previous_map50, p2.previous_job) == (False, 0.70, 0.712, first.job_id)
    assert p2.reason == "not better than the promoted"
    kept = registry.promoted("shapes", "yolov8n")
    assert kept is not None and kept.job_id == first.job_id

    better, arts3 = _finished(store, registry, "n3")
    p3 = registry.consider(better, arts3, 0.731, None, at=3.0)
    assert p3.promoted and p3.delta == pytest.approx(0.019)
    now = registry.promoted("shapes", "yolov8n")
    assert now is not None and (now.job_id, now.previous_job, now.previous_map50) == (
        better.job_id,
        first.job_id,
        0.712,
    )
    # The earlier promoted files stay where they were: nothing the manifest named before was overwritten.
    registry.s3.head_object(Bucket=BUCKET, Key=best.key)

    # A redelivered Job Finished of the promoted run gives the same answer and copies nothing again.
    again = registry.consider(better, arts3, 0.731, None, at=4.0)
    assert (again.promoted, again.previous_map50, again.previous_job) == (True, 0.712, first.job_id)


def test_a_run_without_map50_or_best_weights_is_not_promoted(store: JobsStore, registry: ModelRegistry) -> None:
    rec, arts = _finished(store, registry, "m1")
    assert registry.consider(rec, arts, None, None, at=1.0).reason == "the run reported no mAP50"
    no_best = [a for a in arts if a.name != "best"]
    assert registry.consider(rec, no_best, 0.5, None, at=1.0).reason == "no best weights"
    assert registry.promoted("shapes", "yolov8n") is None


def test_a_corrupt_manifest_is_an_error_not_a_silent_first_promotion(registry: ModelRegistry) -> None:
    registry.s3.put_object(Bucket=BUCKET, Key=manifest_key("shapes", "yolov8n"), Body=b"{not json")
    with pytest.raises(ValueError, match="not a promotion manifest"):
        registry.promoted("shapes", "yolov8n")
