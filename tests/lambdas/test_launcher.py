"""The launcher's Lambda entry: an EventBridge `Job Queued` in, one launch, metrics by outcome and market."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from infra.local.invoke import LambdaContext
from lambdas import launcher
from spotter.events import UnknownEvent
from spotter.status import JobStatus
from tests.lambdas.stack import Stack, make_stack
from tests.spotter.helpers import make_spec

CONTEXT = LambdaContext(function_name="spotter-launcher")


@pytest.fixture
def stack(aws: str, monkeypatch: pytest.MonkeyPatch) -> Stack:
    s = make_stack()
    s.publish_fake_agent()
    for name, value in s.settings.model_dump().items():
        monkeypatch.setenv(f"SPOTTER_{name.upper()}", ",".join(value) if isinstance(value, tuple) else str(value))
    return s


def _eventbridge(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An event as an EventBridge rule hands it to a Lambda target."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type,
        "source": "spotter.bot",
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
