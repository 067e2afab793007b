"""The recorder (the one writer of job state), recovery after an interruption, and EC2's events, against moto."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lambdas.ec2_events import Ec2Event, Ec2Events, NotSettled
from lambdas.recorder import Recorder
from lambdas.recovery import GiveUp, Relaunch, after_interruption, work_lost
from spotter import layout
from spotter.config import ControlSettings
from spotter.events import (
    Artifact,
    Bus,
    FinalMetrics,
    JobCancelled,
    JobCancelRequested,
    JobCheckpoint,
    JobFinished,
    JobInterrupted,
    JobLaunched,
    JobPhase,
    JobProgress,
    from_eventbridge,
    to_eventbridge,
)
from spotter.models import ModelRegistry
from spotter.status import JobStatus
from spotter.store import Checkpoint, JobsStore
from tests.spotter.helpers import ACCOUNT, instance_for, make_spec, outputs_of, table_definition

BUS, BUCKET, SHA = "bus", "bucket", "a" * 64


@dataclass
class World:
    store: JobsStore
    recorder: Recorder
    settings: ControlSettings
    queue: str
    sqs: Any
    s3: Any
    ec2: Any

    def control_events(self) -> list[dict[str, Any]]:
        """What the control plane put on the bus since the last look (Job Changed, Job Relaunch)."""
        out: list[dict[str, Any]] = []
        while msgs := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages"):
            for m in msgs:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        return out

    def running(self, seed: str, attempt_instances: int = 1) -> str:
        spec = make_spec(seed=seed, epochs="6")
        self.store.create(spec, trigger=seed)
        for n in range(1, attempt_instances + 1):
            if n > 1:
                self.store.mark_interrupted(spec.job_id, n - 1)
            self.store.mark_launching(spec.job_id, n)
            self.recorder.record(
                JobLaunched(
                    job_id=spec.job_id,
                    attempt=n,
                    instance_id=instance_for(spec.job_id, n),
                    instance_type="g4dn.xlarge",
                    market="spot",
                )
            )
            self.recorder.record(JobPhase(job_id=spec.job_id, attempt=n, seq=1, phase="train", state="started"))
        self.control_events()
        return spec.job_id


@pytest.fixture
def world(aws: str) -> World:
    boto3.client("dynamodb").create_table(**table_definition("jobs"))
    events, sqs, s3 = boto3.client("events"), boto3.client("sqs"), boto3.client("s3")
    events.create_event_bus(Name=BUS)
    s3.create_bucket(Bucket=BUCKET)
    queue = sqs.create_queue(QueueName="control")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="control", EventBusName=BUS, EventPattern=json.dumps({"source": ["spotter.control", "spotter.agent"]})
    )
    events.put_targets(Rule="control", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])
    settings = ControlSettings(jobs_table="jobs", bucket=BUCKET, bus_name=BUS, relaunch_backoff_seconds=60)
    store = JobsStore("jobs")
    return World(store, Recorder(settings, store, Bus(BUS), s3), settings, queue, sqs, s3, boto3.client("ec2"))


def _changed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["detail"] for e in events if e["detail-type"] == "Job Changed"]


def test_each_recorded_change_goes_to_the_notifier_as_job_changed(world: World) -> None:
    job = world.running("rec")
    world.recorder.record(JobProgress(job_id=job, seq=2, unit="epoch", current=2, total=6))
    world.recorder.record(JobProgress(job_id=job, seq=1, unit="epoch", current=1, total=6))  # stale: nothing

    (changed,) = _changed(world.control_events())
    assert changed["cause"] == "Job Progress" and changed["status"] == "RUNNING"
    assert world.store.get(job).progress.current == 2  # type: ignore[union-attr]


def test_an_interruption_with_a_checkpoint_relaunches_at_once_and_says_what_is_resumed(world: World) -> None:
    job = world.running("int")
    world.recorder.record(JobProgress(job_id=job, seq=2, unit="epoch", current=4, total=6))
    cp = Artifact(name="checkpoint", key=outputs_of(job).checkpoint(".pt"), sha256=SHA, size=10)

    world.recorder.record(JobInterrupted(job_id=job, seq=3, checkpoint=cp, current=3))

    rec = world.store.get(job)
    assert rec.status is JobStatus.INTERRUPTED and rec.checkpoint is not None and rec.checkpoint.current == 3
    assert rec.attempts[0].ended_reason == "interrupted" and rec.relaunch_at is None
    events = world.control_events()
    assert [e["detail"]["attempt"] for e in events if e["detail-type"] == "Job Relaunch"] == [1]
    notes = [c["note"] for c in _changed(events) if c.get("note")]
    assert any("Attempt 2 resumes after epoch 3" in n for n in notes), notes


def test_a_later_interruption_waits_out_a_backoff_and_the_last_allowed_one_gives_up(world: World) -> None:
    job = world.running("back", attempt_instances=3)
    world.recorder.record(JobInterrupted(job_id=job, attempt=3, seq=5))
    rec = world.store.get(job)
    assert rec.status is JobStatus.INTERRUPTED and rec.relaunch_at is not None
    assert rec.relaunch_at - time.time() == pytest.approx(120, abs=5)  # 4th attempt: 60 s × 2
    assert not [e for e in world.control_events() if e["detail-type"] == "Job Relaunch"]

    capped = world.settings.model_copy(update={"max_attempts": 3})
    step = after_interruption(rec, capped, "Reclaimed.")
    assert isinstance(step, GiveUp) and step.kind == "attempts" and "3 attempts" in step.message


def test_work_lost_counts_what_the_ended_attempt_did_past_its_checkpoint(world: World) -> None:
    job = world.running("lost")
    world.recorder.record(JobProgress(job_id=job, seq=2, unit="epoch", current=5, total=6))
    world.store.record_checkpoint(job, 1, Checkpoint(key="k", sha256=SHA, size=1, current=3, attempt=1, at=time.time()))
    rec = world.store.mark_interrupted(job, 1)
    # In epoch 5, four were done, three are in the checkpoint.
    assert work_lost(rec) == 1
    step = after_interruption(rec, world.settings, "Reclaimed.")
    assert isinstance(step, Relaunch) and step.attempt == 2 and step.delay == 0 and "Work lost: 1 epoch." in step.note


def test_a_cancel_reaches_the_agent_through_its_control_object_and_a_queued_job_ends_at_once(world: World) -> None:
    job = world.running("can")
    world.recorder.record(JobCancelRequested(job_id=job, by="U2"))
    body = json.loads(world.s3.get_object(Bucket=BUCKET, Key=layout.control(job))["Body"].read())
    assert body["action"] == "cancel" and body["by"] == "U2"
    rec = world.store.get(job)
    assert rec.status is JobStatus.RUNNING and rec.cancel is not None and rec.cancel.by == "U2"

    weights = Artifact(name="last", key=outputs_of(job).artifact("last", ".pt"), sha256=SHA, size=3)
    world.recorder.record(JobCancelled(job_id=job, seq=9, artifacts=[weights]))
    rec = world.store.get(job)
    assert rec.status is JobStatus.CANCELLED and [a.name for a in rec.artifacts] == ["last"]
    assert rec.failure is not None and "U2" in rec.failure.message

    queued = make_spec(seed="q")
    world.store.create(queued, trigger="q")
    world.recorder.record(JobCancelRequested(job_id=queued.job_id, by="U1"))
    assert world.store.get(queued.job_id).status is JobStatus.CANCELLED


def test_an_end_recorded_before_the_notifier_could_be_told_is_told_on_redelivery(world: World) -> None:
    job = world.running("redo")
    world.recorder.record(JobPhase(job_id=job, seq=5, phase="upload", state="started"))
    world.store.mark_succeeded(job, 1, [])  # an earlier delivery recorded it, then could not put Job Changed
    world.control_events()

    world.recorder.record(JobFinished(job_id=job, seq=9, artifacts=[]))

    (changed,) = _changed(world.control_events())
    assert changed["status"] == "SUCCEEDED" and changed["status_changed"]


def test_checkpoints_are_recorded_newest_first(world: World) -> None:
    job = world.running("cp")
    art = Artifact(name="checkpoint", key=outputs_of(job).checkpoint(".pt"), sha256=SHA, size=1)
    world.recorder.record(JobCheckpoint(job_id=job, seq=3, artifact=art, current=2, at=200.0))
    world.recorder.record(JobCheckpoint(job_id=job, seq=2, artifact=art, current=1, at=100.0))
    assert world.store.get(job).checkpoint.current == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "elsewhere",
    [
        lambda job: outputs_of(job, 2).checkpoint(".pt"),  # another attempt's instance
        lambda job: outputs_of("shapes-other1").checkpoint(".pt"),  # another job's
        lambda job: "models/shapes/yolov8n/best.pt",  # promoted weights
    ],
)
def test_outputs_the_attempts_instance_did_not_write_are_refused(world: World, elsewhere: Callable[[str], str]) -> None:
    job = world.running("own")
    world.control_events()
    art = Artifact(name="best", key=elsewhere(job), sha256=SHA, size=1)
    for ev in (
        JobCheckpoint(job_id=job, seq=2, artifact=art, current=2),
        JobInterrupted(job_id=job, seq=3, checkpoint=art, current=2),
        JobFinished(job_id=job, seq=4, artifacts=[art]),
    ):
        outcome = world.recorder.record(ev)
        assert not outcome.changed and outcome.refused and "is not an output of attempt 1's instance" in outcome.refused
    rec = world.store.get(job)
    assert rec.status is JobStatus.RUNNING and rec.checkpoint is None and not rec.artifacts
    assert not world.control_events()


# -- EC2 events ---------------------------------------------------------------------------------------------


def _tagged_instance(world: World, job: str) -> str:
    iid = world.ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "spotter:job", "Value": job}]}],
    )["Instances"][0]["InstanceId"]
    return str(iid)


def _training_on_a_tagged_instance(world: World, seed: str) -> tuple[str, str]:
    """A job in its train phase on an instance tagged with it; its events so far are drained."""
    spec = make_spec(seed=seed)
    world.store.create(spec, trigger=seed)
    world.store.mark_launching(spec.job_id, 1)
    iid = _tagged_instance(world, spec.job_id)
    world.recorder.record(JobLaunched(job_id=spec.job_id, instance_id=iid, instance_type="g4dn.xlarge", market="spot"))
    world.recorder.record(JobPhase(job_id=spec.job_id, seq=1, phase="train", state="started"))
    world.control_events()
    return spec.job_id, iid


def _state_change(iid: str, state: str, age: float) -> Ec2Event:
    when = (datetime.now(UTC) - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Ec2Event.model_validate(
        {
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "time": when,
            "detail": {"instance-id": iid, "state": state},
        }
    )


def test_an_instance_that_vanished_under_a_running_job_restarts_it_once_its_last_events_had_time(world: World) -> None:
    job, iid = _training_on_a_tagged_instance(world, "van")
    handler = Ec2Events(world.settings, world.store, Bus(BUS), world.ec2, world.s3)

    with pytest.raises(NotSettled):
        handler.handle(_state_change(iid, "terminated", age=5))
    assert world.store.get(job).status is JobStatus.RUNNING

    assert handler.handle(_state_change(iid, "terminated", age=120)) == "interrupted"
    rec = world.store.get(job)
    assert rec.status is JobStatus.INTERRUPTED and rec.attempts[0].ended_reason == "vanished"
    events = world.control_events()
    assert [e["detail"]["attempt"] for e in events if e["detail-type"] == "Job Relaunch"] == [1]
    assert any("restarts from scratch" in (c.get("note") or "") for c in _changed(events))
    # Once decided, a repeat of the event does nothing.
    assert handler.handle(_state_change(iid, "terminated", age=130)) == "ignored"


def test_an_instance_gone_after_its_agent_ended_the_attempt_is_not_vanished_its_end_is_published_again(
    world: World,
) -> None:
    job, iid = _training_on_a_tagged_instance(world, "slow")
    outputs = layout.Outputs(job, layout.instance_arn("aws", "us-east-1", ACCOUNT, iid))
    best = Artifact(name="best", key=outputs.artifact("best", ".pt"), sha256=SHA, size=7)
    end = JobFinished(job_id=job, seq=40, artifacts=[best])
    # The agent wrote its end before powering off; the bus has not delivered it yet.
    body = json.dumps(to_eventbridge(end)).encode()
    world.s3.put_object(Bucket=BUCKET, Key=outputs.attempt_end(1), Body=body)
    handler = Ec2Events(world.settings, world.store, Bus(BUS), world.ec2, world.s3)

    assert handler.handle(_state_change(iid, "terminated", age=120)) == "ignored"

    rec = world.store.get(job)
    assert rec.status is JobStatus.RUNNING and rec.attempts[0].ended_reason is None
    events = world.control_events()
    assert not [e for e in events if e["detail-type"] == "Job Relaunch"]
    (again,) = [e for e in events if e["detail-type"] == "Job Finished"]
    world.recorder.record(from_eventbridge(again))
    done = world.store.get(job)
    assert done.status is JobStatus.SUCCEEDED and [a.name for a in done.artifacts] == ["best"]
    assert len(done.attempts) == 1


def _on_a_spot_instance(world: World, seed: str) -> tuple[str, Ec2Events]:
    """A job launched on a tagged spot instance (its events drained); the instance id and the EC2 events handler."""
    spec = make_spec(seed=seed)
    world.store.create(spec, trigger=seed)
    world.store.mark_launching(spec.job_id, 1)
    iid = _tagged_instance(world, spec.job_id)
    world.recorder.record(JobLaunched(job_id=spec.job_id, instance_id=iid, instance_type="g4dn.xlarge", market="spot"))
    world.control_events()
    return iid, Ec2Events(world.settings, world.store, Bus(BUS), world.ec2)


def test_a_spot_warning_is_said_in_the_thread_and_an_unknown_instance_is_ignored(world: World) -> None:
    iid, handler = _on_a_spot_instance(world, "warn")
    warning = {
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "detail": {"instance-id": iid, "instance-action": "terminate"},
    }
    assert handler.handle(Ec2Event.model_validate(warning)) == "warned"
    (changed,) = _changed(world.control_events())
    assert "reclaim" in changed["note"] and iid in changed["note"]

    stranger = world.ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    assert handler.handle(_state_change(stranger, "terminated", age=300)) == "ignored"


def test_a_rebalance_recommendation_is_said_once_per_attempt(world: World) -> None:
    iid, handler = _on_a_spot_instance(world, "rebalance")
    recommendation = Ec2Event.model_validate(
        {
            "detail-type": "EC2 Instance Rebalance Recommendation",
            "source": "aws.ec2",
            "detail": {"instance-id": iid},
        }
    )
    assert handler.handle(recommendation) == "warned"
    (changed,) = _changed(world.control_events())
    assert "elevated risk" in changed["note"] and iid in changed["note"] and "checkpoint" in changed["note"]
    assert handler.handle(recommendation) == "ignored", "EventBridge delivered it again"
    assert not _changed(world.control_events())


def test_a_scheduled_run_that_finishes_is_promoted_with_its_final_scores(world: World) -> None:
    job = world.running("sched")
    world.store.db.update_item(  # a run a schedule started (test set-up: the spec is the scheduled-run function's)
        TableName="jobs",
        Key={"job_id": {"S": job}},
        UpdateExpression="SET spec.schedule_id = :s",
        ExpressionAttributeValues={":s": {"S": "shapes-yolov8n-k3m9"}},
    )
    body = b"weights"
    key = outputs_of(job).artifact("best", ".pt")
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    best = Artifact(name="best", key=key, sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    final = FinalMetrics(map50=0.731, map50_95=0.41, per_class_ap50={"circle": 0.9, "square": 0.56})

    world.recorder.record(JobFinished(job_id=job, seq=9, artifacts=[best], metrics=final))

    rec = world.store.get(job)
    assert rec.status is JobStatus.SUCCEEDED
    assert rec.final_metrics == final
    assert rec.promotion is not None and rec.promotion.promoted and rec.promotion.map50 == 0.731
    promoted = ModelRegistry(world.s3, BUCKET).promoted("shapes", "yolov8n")
    assert promoted is not None and promoted.job_id == job


def test_a_job_not_started_by_a_schedule_is_never_promoted(world: World) -> None:
    job = world.running("manual")
    world.recorder.record(JobFinished(job_id=job, seq=9, artifacts=[], metrics=FinalMetrics(map50=0.99)))
    rec = world.store.get(job)
    assert rec.status is JobStatus.SUCCEEDED and rec.promotion is None
    assert ModelRegistry(world.s3, BUCKET).promoted("shapes", "yolov8n") is None
