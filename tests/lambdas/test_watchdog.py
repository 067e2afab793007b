"""The watchdog's decisions, as a pure function of the jobs, their instances and the time; then one pass in moto."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import boto3
import pytest

from lambdas import watchdog
from lambdas.watchdog import Cancel, Fail, Instance, Relaunch, Terminate, Vanished, decide
from spotter import layout
from spotter.config import ControlSettings
from spotter.events import Bus, JobError, JobLaunched, from_eventbridge, to_eventbridge
from spotter.status import JobStatus
from spotter.store import Attempt, CancelRequest, JobRecord, JobsStore
from tests.spotter.helpers import ACCOUNT, make_spec, table_definition

NOW = 1_800_000_000.0
S = ControlSettings(
    jobs_table="jobs",
    bucket="artifacts",
    bus_name="bus",
    heartbeat_stale_seconds=600,
    launching_timeout_seconds=900,
    cancel_grace_seconds=180,
    vanish_settle_seconds=60,
)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def job(
    status: JobStatus,
    *,
    seed: str = "w1",
    attempt: int = 1,
    instance: str | None = "i-1",
    started: float = NOW - 3600,
    heartbeat: float | None = NOW - 30,
    **extra: object,
) -> JobRecord:
    spec = make_spec(seed=seed)
    attempts = [Attempt(number=n, started_at=started) for n in range(1, attempt + 1)]
    attempts[-1] = Attempt(number=attempt, instance_id=instance, started_at=started)
    return JobRecord(
        job_id=spec.job_id,
        status=status,
        spec=spec,
        channel="C1",
        created_at=_iso(started - 60),
        updated_at=_iso(started),
        attempt=attempt,
        attempts=attempts,
        heartbeat_at=heartbeat,
        **extra,
    )


def inst(rec: JobRecord | None, iid: str = "i-1", state: str = "running", attempt: int = 1) -> Instance:
    return Instance(iid, state, rec.job_id if rec else "ghost-aaaaaa", attempt)


def test_a_healthy_running_job_is_left_alone() -> None:
    rec = job(JobStatus.RUNNING)
    assert decide([rec], [inst(rec)], {}, NOW, S) == []


def test_a_stale_heartbeat_fails_the_job_and_terminates_its_instance() -> None:
    rec = job(JobStatus.RUNNING, heartbeat=NOW - 601)
    (action,) = decide([rec], [inst(rec)], {}, NOW, S)
    assert isinstance(action, Fail) and action.kind == "heartbeat" and action.terminate == ("i-1",)
    assert "10 min" in action.message


def test_a_job_past_max_hours_fails_as_a_timeout() -> None:
    rec = job(JobStatus.RUNNING, started=NOW - 4 * 3600 - 601)  # max_hours defaults to 4
    (action,) = decide([rec], [inst(rec)], {}, NOW, S)
    assert isinstance(action, Fail) and action.kind == "timeout"


def test_a_job_stuck_launching_fails() -> None:
    rec = job(JobStatus.LAUNCHING, started=NOW - 901, heartbeat=None)
    (action,) = decide([rec], [inst(rec, state="pending")], {}, NOW, S)
    assert isinstance(action, Fail) and action.kind == "launch" and action.terminate == ("i-1",)
    young = job(JobStatus.LAUNCHING, started=NOW - 60, heartbeat=None)
    assert decide([young], [inst(young, state="pending")], {}, NOW, S) == []


def test_a_job_the_launcher_never_took_fails() -> None:
    rec = job(JobStatus.QUEUED, attempt=1, instance=None, started=NOW - 1000, heartbeat=None)
    (action,) = decide([rec], [], {}, NOW, S)
    assert isinstance(action, Fail) and "launcher" in action.message


def test_instances_of_ended_or_unknown_jobs_are_terminated_after_a_grace() -> None:
    done = job(JobStatus.SUCCEEDED, seed="w2", finished_at=NOW - 300)
    just_done = job(JobStatus.FAILED, seed="w3", finished_at=NOW - 10)
    actions = decide(
        [],
        [inst(done, "i-2"), inst(just_done, "i-3"), inst(None, "i-4")],
        {done.job_id: done, just_done.job_id: just_done, "ghost-aaaaaa": None},
        NOW,
        S,
    )
    assert {(a.instance_ids, a.reason) for a in actions if isinstance(a, Terminate)} == {
        (("i-2",), "its job ended SUCCEEDED"),
        (("i-4",), "its job does not exist"),
    }


def test_an_earlier_attempts_instance_is_terminated() -> None:
    rec = job(JobStatus.RUNNING, attempt=2, instance="i-new")
    actions = decide([rec], [inst(rec, "i-old", attempt=1), inst(rec, "i-new", attempt=2)], {}, NOW, S)
    assert actions == [Terminate(("i-old",), rec.job_id, "left over from an earlier attempt")]


def test_a_cancel_the_agent_ignored_is_carried_out() -> None:
    rec = job(JobStatus.RUNNING, cancel=CancelRequest(by="U2", at=NOW - 181))
    (action,) = decide([rec], [inst(rec)], {}, NOW, S)
    assert isinstance(action, Cancel) and action.by == "U2" and action.terminate == ("i-1",)
    fresh = job(JobStatus.RUNNING, cancel=CancelRequest(by="U2", at=NOW - 5))
    assert decide([fresh], [inst(fresh)], {}, NOW, S) == []


def test_an_interrupted_job_is_relaunched_once_its_backoff_has_passed() -> None:
    waiting = job(JobStatus.INTERRUPTED, relaunch_at=NOW + 30)
    assert decide([waiting], [], {}, NOW, S) == []
    due = job(JobStatus.INTERRUPTED, relaunch_at=NOW - 1)
    assert decide([due], [], {}, NOW, S) == [Relaunch(due.job_id, 1)]


def test_a_gone_instance_under_a_silent_job_is_recovered_but_not_while_its_last_events_may_be_on_the_way() -> None:
    rec = job(JobStatus.RUNNING, heartbeat=NOW - 120)
    assert decide([rec], [inst(rec, state="terminated")], {}, NOW, S) == [Vanished(rec.job_id, "i-1", "terminated")]
    talking = job(JobStatus.RUNNING, heartbeat=NOW - 5)
    assert decide([talking], [inst(talking, state="terminated")], {}, NOW, S) == []


# -- one pass against moto --------------------------------------------------------------------------------------


@pytest.fixture
def world(aws: str) -> tuple[JobsStore, object, str]:
    boto3.client("dynamodb").create_table(**table_definition("jobs"))
    boto3.client("events").create_event_bus(Name="bus")
    boto3.client("s3").create_bucket(Bucket=S.bucket)
    return JobsStore("jobs"), boto3.client("ec2"), "bus"


def _run_instance(ec2: object, job_id: str, attempt: int = 1) -> str:
    tags = [
        {"Key": "spotter:app", "Value": "spotter"},
        {"Key": "spotter:job", "Value": job_id},
        {"Key": "spotter:attempt", "Value": str(attempt)},
    ]
    resp = ec2.run_instances(  # type: ignore[attr-defined]
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        InstanceType="g4dn.xlarge",
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )
    return str(resp["Instances"][0]["InstanceId"])


def _running_on_an_instance(store: JobsStore, ec2: object, seed: str) -> tuple[str, str]:
    spec = make_spec(seed=seed)
    store.create(spec, trigger=seed)
    store.mark_launching(spec.job_id, 1)
    iid = _run_instance(ec2, spec.job_id)
    store.record_launch(
        JobLaunched(job_id=spec.job_id, instance_id=iid, instance_type="g4dn.xlarge", market="spot", at=time.time())
    )
    store.mark_running(spec.job_id, 1)
    return spec.job_id, iid


def test_a_pass_fails_a_silent_job_terminates_its_instance_and_notes_it(world: tuple[JobsStore, object, str]) -> None:
    store, ec2, bus = world
    job_id, iid = _running_on_an_instance(store, ec2, "dead")
    orphan = _run_instance(ec2, "nobody-aaaaaa")
    settings = S.model_copy(update={"jobs_table": "jobs", "bus_name": bus, "heartbeat_stale_seconds": 1})
    dog = watchdog.Watchdog(settings, store, Bus(bus), ec2, boto3.client("s3"))

    done = dog.run(now=time.time() + 5)

    assert done.counts() == {"Fail": 1, "Terminate": 1}
    rec = store.get(job_id)
    assert rec.status is JobStatus.FAILED and rec.failure is not None and rec.failure.kind == "heartbeat"
    assert any("Watchdog" in n for n in rec.notes)
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances(InstanceIds=[iid, orphan])["Reservations"]  # type: ignore[attr-defined]
        for i in r["Instances"]
    }
    assert states == {iid: "terminated", orphan: "terminated"}


def test_a_silent_job_whose_agent_had_ended_it_is_not_failed_its_end_is_published_again(
    world: tuple[JobsStore, object, str],
) -> None:
    store, ec2, bus = world
    job_id, iid = _running_on_an_instance(store, ec2, "late")
    s3 = boto3.client("s3")
    end = JobError(job_id=job_id, seq=9, phase="train", kind="oom", message="CUDA out of memory")
    outputs = layout.Outputs(job_id, layout.instance_arn("aws", "us-east-1", ACCOUNT, iid))
    s3.put_object(Bucket=S.bucket, Key=outputs.attempt_end(1), Body=json.dumps(to_eventbridge(end)))
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="agent")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events")
    events.put_rule(Name="agent", EventBusName=bus, EventPattern=json.dumps({"source": ["spotter.agent"]}))
    events.put_targets(Rule="agent", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    settings = S.model_copy(update={"jobs_table": "jobs", "bus_name": bus, "heartbeat_stale_seconds": 1})

    watchdog.Watchdog(settings, store, Bus(bus), ec2, s3).run(now=time.time() + 5)

    assert store.get(job_id).status is JobStatus.RUNNING  # not failed for silence: its end is on the way
    (msg,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert from_eventbridge(json.loads(msg["Body"])) == end
