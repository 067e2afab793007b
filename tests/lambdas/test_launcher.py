"""The launcher's Lambda entry: an EventBridge `Job Queued` or `Job Relaunch` in, one launch, metrics by outcome."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from infra.local.invoke import LambdaContext
from lambdas import launcher
from spotter import layout
from spotter.events import UnknownEvent
from spotter.spec import RunSpec
from spotter.status import JobStatus
from spotter.store import Checkpoint
from tests.lambdas.stack import BUCKET, Stack, make_stack
from tests.spotter.helpers import force_status, make_spec, outputs_of

CONTEXT = LambdaContext(function_name="spotter-launcher")


@pytest.fixture
def stack(aws: str, monkeypatch: pytest.MonkeyPatch) -> Stack:
    s = make_stack()
    s.publish_fake_agent()
    for name, value in s.settings.model_dump().items():
        monkeypatch.setenv(f"SPOTTER_{name.upper()}", ",".join(value) if isinstance(value, tuple) else str(value))
    return s


def _eventbridge(detail_type: str, detail: dict[str, Any], source: str = "spotter.bot") -> dict[str, Any]:
    """An event as an EventBridge rule hands it to a Lambda target."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": source,
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def _metrics(out: str) -> list[dict[str, Any]]:
    return [line for line in map(json.loads, filter(None, out.splitlines())) if "_aws" in line]


def test_job_queued_launches_and_counts(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = io.StringIO()
    monkeypatch.setattr(launcher.logger.registered_handler, "stream", logs)
    spec = make_spec(seed="h")
    stack.store.create(spec, trigger="h")
    event = _eventbridge("Job Queued", {"job_id": spec.job_id, "attempt": 1, "seq": 0, "at": 1.0})

    result = launcher.handler(event, CONTEXT)

    assert result["result"] == "launched" and result["market"] == "spot"
    assert stack.store.get(spec.job_id).status is JobStatus.LAUNCHING
    [emf] = _metrics(capsys.readouterr().out)
    assert emf["Launches"] == [1.0] and emf["market"] == "spot"
    # The launch logic's own log lines come out as the handler's JSON, with the job id.
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    [logged] = [line for line in lines if line["message"] == "launched"]
    assert logged["job_id"] == spec.job_id and logged["instance_id"] == result["instance_id"]

    again = launcher.handler(event, CONTEXT)
    assert again["result"] == "skipped"
    [emf] = _metrics(capsys.readouterr().out)
    assert emf["LaunchesSkipped"] == [1.0]
    assert len(stack.instances(spec.job_id)) == 1


@pytest.mark.filterwarnings("ignore:No application metrics")
def test_other_events_are_refused(stack: Stack) -> None:
    with pytest.raises(UnknownEvent):
        launcher.handler(_eventbridge("Job Finished", {"job_id": "shapes-abcdef", "artifacts": []}), CONTEXT)


def test_job_relaunch_from_the_control_plane_launches_the_next_attempt_resuming(stack: Stack) -> None:
    spec = make_spec(seed="r")
    stack.store.create(spec, trigger="r")
    force_status(stack.store, spec.job_id, JobStatus.INTERRUPTED, attempt=1)
    cp = Checkpoint(
        key=outputs_of(spec.job_id).checkpoint(".pt"), sha256="d" * 64, size=10, current=3, attempt=1, at=1.0
    )
    stack.store.record_checkpoint(spec.job_id, 1, cp)
    relaunch = _eventbridge(
        "Job Relaunch", {"job_id": spec.job_id, "attempt": 1, "seq": 0, "at": 2.0}, "spotter.control"
    )

    result = launcher.handler(relaunch, CONTEXT)

    assert result["result"] == "launched" and result["attempt"] == 2
    body = stack.s3.get_object(Bucket=BUCKET, Key=layout.run_spec(spec.job_id))["Body"].read()
    resume = RunSpec.model_validate_json(body).resume
    assert resume is not None and (resume.key, resume.current) == (cp.key, 3)
    # The same relaunch delivered again finds attempt 2 under way.
    assert launcher.handler(relaunch, CONTEXT)["result"] == "skipped"
    assert len(stack.instances(spec.job_id)) == 1


@pytest.mark.filterwarnings("ignore:No application metrics")
@pytest.mark.parametrize(
    "detail_type, source",
    [("Job Relaunch", "spotter.bot"), ("Job Queued", "spotter.control"), ("Job Queued", "somebody.else")],
)
def test_launch_events_from_the_wrong_source_are_refused(stack: Stack, detail_type: str, source: str) -> None:
    spec = make_spec(seed="w")
    stack.store.create(spec, trigger="w")
    event = _eventbridge(detail_type, {"job_id": spec.job_id, "attempt": 1, "seq": 0, "at": 1.0}, source)
    with pytest.raises(UnknownEvent, match=r"Job Queued from spotter\.bot and Job Relaunch from spotter\.control"):
        launcher.handler(event, CONTEXT)
    assert stack.store.get(spec.job_id).status is JobStatus.QUEUED
