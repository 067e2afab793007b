"""A relaunch against moto: the next attempt's run spec says which checkpoint to resume from, and the record too."""

from __future__ import annotations

from spotter import layout
from spotter.events import Artifact
from spotter.models import Promoted, manifest_key
from spotter.spec import RunSpec
from spotter.status import JobStatus
from spotter.store import Checkpoint
from tests.lambdas.stack import BUCKET, Stack
from tests.spotter.helpers import force_status, make_spec, outputs_of

SHA = "c" * 64


def _interrupted(stack: Stack, seed: str, checkpoint: Checkpoint | None) -> str:
    spec = make_spec(seed=seed)
    stack.store.create(spec, trigger=seed)
    force_status(stack.store, spec.job_id, JobStatus.INTERRUPTED, attempt=1)
    if checkpoint is not None:
        assert stack.store.record_checkpoint(spec.job_id, 1, checkpoint) is not None
    return spec.job_id


def _run_spec(stack: Stack, job: str) -> RunSpec:
    body = stack.s3.get_object(Bucket=BUCKET, Key=layout.run_spec(job))["Body"].read()
    return RunSpec.model_validate_json(body)


def test_a_relaunch_resumes_from_the_last_checkpoint(stack: Stack) -> None:
    key = outputs_of(make_spec(seed="resume").job_id).checkpoint(".pt")
    job = _interrupted(stack, "resume", Checkpoint(key=key, sha256=SHA, size=4096, current=12, attempt=1, at=5.0))

    outcome = stack.launcher().launch(job)

    assert outcome.result == "launched" and outcome.attempt == 2
    run = _run_spec(stack, job)
    assert run.attempt == 2 and run.resume is not None
    resume = run.resume
    assert (resume.key, resume.sha256, resume.size, resume.current, resume.attempt) == (key, SHA, 4096, 12, 1)
    rec = stack.store.get(job)
    assert rec.attempts[1].resumed_from == 12 and rec.attempts[1].instance_id == outcome.instance_id


def test_a_relaunch_without_a_checkpoint_starts_from_scratch(stack: Stack) -> None:
    job = _interrupted(stack, "scratch", None)

    outcome = stack.launcher().launch(job)

    assert outcome.result == "launched" and outcome.attempt == 2
    assert _run_spec(stack, job).resume is None
    assert stack.store.get(job).attempts[1].resumed_from is None


def test_a_stale_relaunch_launches_nothing(stack: Stack) -> None:
    job = _interrupted(stack, "stale", None)
    fleets = stack.record(stack.ec2, "CreateFleet")

    # Asked after attempt 3 was interrupted, delivered now that the job is on attempt 1: not this job's next step.
    outcome = stack.launcher().launch(job, after_attempt=3)

    assert outcome.result == "skipped" and fleets == []
    assert stack.store.get(job).status is JobStatus.INTERRUPTED


def test_a_promoted_start_names_the_promoted_weights_or_none_yet(stack: Stack) -> None:
    first = make_spec(seed="promoted-1", **{"from": "promoted"})
    stack.store.create(first, trigger="promoted-1")
    assert stack.launcher().launch(first.job_id).result == "launched"
    assert _run_spec(stack, first.job_id).initial_weights is None  # nothing promoted yet: pretrained

    best = Artifact(name="best", key="models/shapes/yolov8n/shapes-aaaaaa/best.pt", sha256=SHA, size=2048)
    manifest = Promoted(job_id="shapes-aaaaaa", map50=0.71, artifacts=[best])
    stack.s3.put_object(Bucket=BUCKET, Key=manifest_key("shapes", "yolov8n"), Body=manifest.model_dump_json().encode())
    second = make_spec(seed="promoted-2", **{"from": "promoted"})
    stack.store.create(second, trigger="promoted-2")
    assert stack.launcher().launch(second.job_id).result == "launched"
    start = _run_spec(stack, second.job_id).initial_weights
    assert start is not None
    assert (start.key, start.sha256, start.size, start.job_id, start.map50) == (
        best.key,
        SHA,
        2048,
        "shapes-aaaaaa",
        0.71,
    )

    # Another start than promoted never reads the promoted weights.
    other = make_spec(seed="promoted-3", **{"from": "pretrained"})
    stack.store.create(other, trigger="promoted-3")
    assert stack.launcher().launch(other.job_id).result == "launched"
    assert _run_spec(stack, other.job_id).initial_weights is None
