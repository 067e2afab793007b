"""The build cache function: a job's verified build is copied into cache/build/ once, and nothing else gets in."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
import pytest

from infra.local.invoke import LambdaContext
from lambdas import build_cache
from spotter import layout
from spotter.events import Artifact, JobBuildReady, UnknownEvent
from spotter.store import JobsStore
from tests.spotter.helpers import make_spec, outputs_of, record_instances, table_definition

CONTEXT = LambdaContext(function_name="spotter-build-cache")
TABLE = "jobs"
BUCKET = "spotter-test"
KEY = hashlib.sha256(b"a build key").hexdigest()
BUILD = b"\x1f\x8b a build of darknet"


class Stack:
    def __init__(self) -> None:
        self.s3: Any = boto3.client("s3", region_name="us-east-1")
        self.s3.create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb", region_name="us-east-1").create_table(**table_definition(TABLE))
        self.store = JobsStore(TABLE)

    def job(self, seed: str) -> str:
        """A job in the table (recipe ultralytics) with two attempts launched; returns its id."""
        job_id = self.store.create(make_spec(seed=seed), trigger=seed).job_id
        record_instances(self.store, job_id, attempts=2)
        return job_id

    def upload(
        self, job_id: str, body: bytes = BUILD, key: str | None = None, sha256: str | None = None, attempt: int = 1
    ) -> Artifact:
        """What ensure_build leaves with the attempt's outputs; returns the artifact its event names."""
        key = key or outputs_of(job_id, attempt).build("ultralytics", KEY)
        digest = sha256 or hashlib.sha256(body).hexdigest()
        self.s3.put_object(
            Bucket=BUCKET, Key=key, Body=body, Metadata={"sha256": digest}, Tagging=layout.kind_tagging("build-offer")
        )
        return Artifact(name="build", key=key, sha256=digest, size=len(body))

    def cached(self) -> tuple[bytes, dict[str, str]]:
        obj = self.s3.get_object(Bucket=BUCKET, Key=JobBuildReady.cache_object_key("ultralytics", KEY))
        return obj["Body"].read(), obj["Metadata"]


@pytest.fixture
def stack(aws: str, monkeypatch: pytest.MonkeyPatch) -> Stack:
    for name, value in {"JOBS_TABLE": TABLE, "BUCKET": BUCKET, "BUS_NAME": "spotter"}.items():
        monkeypatch.setenv(f"SPOTTER_{name}", value)
    return Stack()


def _event(job_id: str, artifact: Artifact, recipe: str = "ultralytics", attempt: int = 1) -> dict[str, Any]:
    """A Job Build Ready as an EventBridge rule hands it to its Lambda target."""
    ready = JobBuildReady(job_id=job_id, attempt=attempt, recipe=recipe, key=KEY, artifact=artifact)
    return {
        "version": "0",
        "id": "1b0e7c1a-5d0e-4c43-9a47-8a1f0c0f7a11",
        "detail-type": ready.detail_type,
        "source": ready.source,
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [f"spotter:job/{job_id}"],
        "detail": json.loads(ready.model_dump_json()),
    }


def _metrics(out: str) -> list[dict[str, Any]]:
    return [line for line in map(json.loads, filter(None, out.splitlines())) if "_aws" in line]


def test_a_jobs_build_is_promoted_with_its_sha256_and_builder(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    job = stack.job("a")
    result = build_cache.handler(_event(job, stack.upload(job, attempt=2), attempt=2), CONTEXT)

    assert result["result"] == "promoted"
    assert result["cache_key"] == f"cache/build/ultralytics/{KEY}/build.tar.gz"
    body, metadata = stack.cached()
    assert body == BUILD
    assert metadata == {"sha256": hashlib.sha256(BUILD).hexdigest(), "built-by": job, "built-attempt": "2"}
    # The offer expires with the job's short-lived objects; the cache's copy does not.
    cache_key = JobBuildReady.cache_object_key("ultralytics", KEY)
    assert stack.s3.get_object_tagging(Bucket=BUCKET, Key=cache_key)["TagSet"] == []
    offer = outputs_of(job, 2).build("ultralytics", KEY)
    assert stack.s3.get_object_tagging(Bucket=BUCKET, Key=offer)["TagSet"] == [
        {"Key": "spotter:kind", "Value": "build-offer"}
    ]
    [emf] = _metrics(capsys.readouterr().out)
    assert emf["BuildsPromoted"] == [1.0]


def test_the_first_good_build_wins(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = stack.job("a"), stack.job("b")
    build_cache.handler(_event(first, stack.upload(first)), CONTEXT)
    result = build_cache.handler(_event(second, stack.upload(second, body=BUILD + b" again")), CONTEXT)

    assert result["result"] == "exists" and first in result["message"]
    body, metadata = stack.cached()
    assert body == BUILD and metadata["built-by"] == first
    assert _metrics(capsys.readouterr().out)[-1]["BuildsAlreadyCached"] == [1.0]


def test_an_entry_that_no_longer_matches_its_sha256_is_replaced(stack: Stack) -> None:
    job = stack.job("a")
    stack.s3.put_object(
        Bucket=BUCKET,
        Key=JobBuildReady.cache_object_key("ultralytics", KEY),
        Body=b"truncated",
        Metadata={"sha256": hashlib.sha256(BUILD).hexdigest(), "built-by": "shapes-old111"},
    )
    result = build_cache.handler(_event(job, stack.upload(job)), CONTEXT)

    assert result["result"] == "replaced"
    body, metadata = stack.cached()
    assert body == BUILD and metadata["built-by"] == job


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("another job's upload", "is not where attempt 1"),
        ("another attempt's upload", "is not where attempt 1"),
        ("a key outside the job's prefix", "is not where attempt 1"),
        ("an unknown job", "no job shapes-nobody"),
        ("another recipe", "runs recipe ultralytics, not darknet"),
        ("bytes that do not hash to the sha256", "do not hash to"),
        ("metadata that disagrees with the event", "is not the build the event describes"),
        ("no upload at all", "no object"),
    ],
)
def test_what_is_not_this_jobs_verified_build_is_refused(
    stack: Stack, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    job, other = stack.job("a"), stack.job("b")
    recipe = "ultralytics"
    if case == "another job's upload":
        artifact = stack.upload(other)
    elif case == "another attempt's upload":
        artifact = stack.upload(job, attempt=2)
    elif case == "a key outside the job's prefix":
        artifact = stack.upload(job, key="models/shapes/yolov8n/best.pt")
    elif case == "an unknown job":
        job = "shapes-nobody"
        artifact = stack.upload(job)
    elif case == "another recipe":
        recipe = "darknet"
        artifact = stack.upload(job, key=outputs_of(job).build("darknet", KEY))
    elif case == "bytes that do not hash to the sha256":
        artifact = stack.upload(job, sha256=hashlib.sha256(b"something else").hexdigest())
    elif case == "metadata that disagrees with the event":
        artifact = stack.upload(job).model_copy(update={"sha256": "f" * 64})
    else:
        artifact = Artifact(name="build", key=outputs_of(job).build(recipe, KEY), sha256="a" * 64, size=1)

    result = build_cache.handler(_event(job, artifact, recipe=recipe), CONTEXT)

    assert result["result"] == "refused" and message in result["message"]
    assert not stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="cache/").get("Contents")
    assert _metrics(capsys.readouterr().out)[-1]["BuildsRefused"] == [1.0]


@pytest.mark.filterwarnings("ignore:No application metrics")
def test_other_events_are_refused(stack: Stack) -> None:
    with pytest.raises(UnknownEvent):
        build_cache.handler(
            {"detail-type": "Job Finished", "source": "spotter.agent", "detail": {"job_id": "x", "artifacts": []}},
            CONTEXT,
        )
